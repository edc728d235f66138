"""`politeteacher check-data`: look at a dataset before training on it."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from ..errors import PoliteTeacherError
from . import app, err_console
from .options import CHECK_DATA, output_dir_option

OutputDirOpt = output_dir_option("Where report.json and the drawn grids go (default: runs/check-data/<name>).")
_SHOWN = 5  # file names listed per finding; report.json has them all


def _names(paths: List[str]) -> str:
    more = f" (+{len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else ""
    return ", ".join(Path(p).name for p in paths[:_SHOWN]) + more


def _print_report(report) -> None:
    typer.echo(f"{report.role}: {report.name}" + (f" ({report.json_file})" if report.json_file else ""))
    typer.echo(f"  {report.num_images} images, {report.num_instances} instances"
               + (f" (+{report.num_crowd} crowd regions)" if report.num_crowd else ""))
    for found, what in ((report.without_annotations, "image(s) without annotations (nothing to learn from them "
                         "as labelled images)"),
                        (report.crowd_only, "crowd-only image(s) (no instance, only regions AP ignores)")):
        if found:
            typer.echo(f"  {len(found)} {what}: {_names(found)}")
    for path, why in report.bad_images[:_SHOWN]:
        typer.echo(f"  bad image {path}: {why}")
    if len(report.bad_images) > _SHOWN:
        typer.echo(f"  ... and {len(report.bad_images) - _SHOWN} more bad images (report.json lists them all)")
    if report.without_masks:
        typer.echo(f"  {report.without_masks} instance(s) without a mask (segmentation)")
    width = max([len("class"), *(len(c.name) for c in report.categories)])
    typer.echo(f"  {'JSON id':>7}  {'model id':>8}  {'class':<{width}}  {'instances':>9}  {'images':>6}")
    for c in report.categories:
        typer.echo(f"  {c.dataset_id:>7}  {c.contiguous_id:>8}  {c.name:<{width}}  {c.instances:>9}  {c.images:>6}")
    if report.grid:
        typer.echo(f"  drawn: {report.grid}")


@app.command("check-data")
def check_data(
    data=CHECK_DATA,
    output_dir: OutputDirOpt = None,
    grid: int = typer.Option(6, "--grid", help="Annotated images drawn per set (0: none)."),
) -> None:
    """Look at a dataset before training: counts, empty, crowd-only and bad images, class ids, labels.

    Images and instances per set and per class, images without annotations, crowd-only images, missing
    or unreadable images, the category-id map, and a grid of annotated images drawn with their labels.

    Every image is decoded once, as training checks them.
    Exits with 1 when something would stop training: a missing or unreadable image, a mask missing.
    """
    from ..data.report import inspect_dataset, inspect_folder, named_sets, report_json, save_grid
    from ..io import write_json_atomic

    flags = data.overrides()
    if not flags:
        raise PoliteTeacherError("nothing to check: pass --data FILE, --dataset NAME or --train-json/--train-images")
    sets, unlabeled_folders = named_sets(flags)
    name = Path(data.data).stem if data.data is not None else (sets[0][1] if sets else "unlabeled")
    out = (output_dir or Path("runs/check-data") / name).expanduser().absolute()
    reports, problems = [], []
    for role, set_name in sets:
        report, dicts = inspect_dataset(role, set_name)
        if grid > 0:
            drawn = save_grid(set_name, dicts, out / f"{role}_grid.jpg", grid, skip=[p for p, _ in report.bad_images])
            report.grid = str(drawn or "")
        _print_report(report)
        reports.append(report)
        problems += report.problems()
    folders = [inspect_folder(f) for f in unlabeled_folders]
    for folder in folders:
        typer.echo(f"unlabelled: {folder.folder}: {folder.num_images} images, {len(folder.bad_images)} unreadable")
        for path, why in folder.bad_images[:_SHOWN]:
            typer.echo(f"  bad image {path}: {why}")
        problems += folder.problems()
    write_json_atomic(report_json(reports, folders), out / "report.json", indent=1)
    typer.echo(f"report: {out / 'report.json'}")
    if problems:
        err_console.print(f"[bold red]error:[/] {len(problems)} finding(s) would stop training: " + "; ".join(problems),
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    typer.echo("nothing found that would stop training")
