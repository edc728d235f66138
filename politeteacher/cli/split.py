"""`politeteacher split`: choose the labelled images of a dataset, or import/export Unbiased Teacher's."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import PoliteTeacherError
from . import app
from .options import SPLIT_DATA, DataOptions, OldOutputOpt, deprecated_alias, output_dir_option

OutputDirOpt = output_dir_option("Folder to write the split file into, or the .json file to write (default: "
                                 "splits/<dataset>_<P>pct_seed<S>.json).")


def _dataset_argument(data: DataOptions) -> str:
    if data.data is not None:
        from ..data.data_file import load_data_file

        if data.dataset is not None or data.train_json is not None:
            raise PoliteTeacherError("--data names the training set already; drop --dataset / --train-json")
        loaded = load_data_file(data.data)
        if not (loaded.train_json or loaded.train):
            raise PoliteTeacherError(f"dataset file {loaded.path} has no train_json or train to split; add one")
        return str(loaded.train_json) if loaded.train_json else loaded.train
    if data.train_json is not None:
        if data.dataset is not None:
            raise PoliteTeacherError("pass either --dataset or --train-json, not both")
        if data.train_images is not None and not data.train_images.is_dir():
            raise PoliteTeacherError(f"image folder {data.train_images} not found; pass the folder of --train-json's "
                                     "images")
        return str(data.train_json.expanduser().resolve())
    return data.dataset or "coco_2017_train"


def _check_output(split, output: Path, force: bool) -> None:
    from ..data.splits import Split

    if output.exists() and not force:
        try:
            same = Split.load(output).image_ids == split.image_ids
        except PoliteTeacherError:
            same = False
        if not same:
            raise PoliteTeacherError(
                f"{output} already exists with another split; pass another --output-dir, or --force to replace it"
            )


def _write_starter_data_file(split_file: Path, train_json: Path, train_images: Path) -> Optional[Path]:
    """Write `<split stem>.data.yaml` beside the split file: a dataset file holding the training set and
    the split, for `--data`. A file of that name that differs is the user's: it is left alone."""
    from ..data.data_file import starter_data_file
    from ..io import atomic_write_text

    path = split_file.with_name(split_file.stem + ".data.yaml")
    text = starter_data_file(train_json.expanduser().resolve(), train_images.expanduser().resolve(),
                             split_file.resolve())
    if path.exists() and path.read_text() != text:
        typer.echo(f"warning: {path} exists and differs; left as it is", err=True)
        return None
    atomic_write_text(path, text)
    return path


def _print_counts(counts) -> None:
    """The instances per class of both parts, as a table; one warning line for classes that have no
    labelled instance (the model then learns them from pseudo-labels only, if at all)."""
    if not counts:
        return
    width = max(len("class"), *(len(name) for name, _, _ in counts))
    typer.echo(f"{'class':<{width}}  {'labelled':>8}  {'unlabelled':>10}")
    for name, lab, unl in counts:
        typer.echo(f"{name:<{width}}  {lab:>8}  {unl:>10}")
    missing = [name for name, lab, _ in counts if lab == 0]
    if missing:
        typer.echo(
            f"warning: no labelled instance of {len(missing)} class(es): {', '.join(missing)}; "
            "a larger --percent or another --split-seed may cover them",
            err=True,
        )


@app.command()
def split(
    percent: float = typer.Option(..., "--percent", help="Percent of the annotated images to label, in (0, 100)."),
    split_seed: Optional[int] = typer.Option(
        None, "--split-seed", help="Seed of the random choice (default 1, as in the paper)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", hidden=True),  # before 0.3.0; kept for one version
    data=SPLIT_DATA,
    output_dir: OutputDirOpt = None,
    output: OldOutputOpt = None,
    from_ut: Optional[Path] = typer.Option(
        None, "--from-ut", help="Import this (percent, seed) from Unbiased Teacher's COCO_supervision.txt."
    ),
    to_ut: Optional[Path] = typer.Option(
        None, "--to-ut", help="Also write the split into an Unbiased Teacher file (other entries kept)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different split file."),
) -> None:
    """Pick the labelled images of a dataset (percent, seed) and write a split file.

    Prints the instances per class in the labelled and unlabelled parts (also written to the split
    file), and warns about classes with no labelled instance. With --train-json/--train-images it also
    writes a starter dataset file beside the split (`<split>.data.yaml`) for `--data`.
    """
    from ..data.splits import class_instance_counts, import_ut, load_dataset, make_split, ut_file_data
    from ..io import write_jsons_atomic

    seed = deprecated_alias(seed, split_seed, "--seed", "--split-seed")
    seed = 1 if seed is None else seed
    output = deprecated_alias(output, output_dir, "--output", "--output-dir")
    source = _dataset_argument(data)
    if from_ut is not None and not from_ut.is_file():
        raise PoliteTeacherError(f"{from_ut} not found; pass Unbiased Teacher's COCO_supervision.txt")
    loaded = load_dataset(source)
    if from_ut:
        chosen = import_ut(from_ut, source, percent, seed, loaded=loaded)
    else:
        chosen = make_split(source, percent, seed, loaded=loaded)
    stem = Path(chosen.dataset).stem if source.endswith(".json") else chosen.dataset
    default_name = f"{stem}_{chosen.percent:g}pct_seed{chosen.seed}.json"
    if output is None:
        output = Path("splits") / default_name
    elif output.is_dir() or output.suffix.lower() != ".json":
        output = output / default_name
    _check_output(chosen, output, force)
    counts = class_instance_counts(chosen, loaded)
    split_json = chosen.to_json()
    split_json["instances_per_class"] = {name: {"labeled": lab, "unlabeled": unl} for name, lab, unl in counts}
    files = [(split_json, output, {"indent": 1})]
    if to_ut is not None:
        files.append((ut_file_data(chosen, to_ut, source), to_ut, {}))
    write_jsons_atomic(files)  # both files or neither
    typer.echo(
        f"{chosen.num_labeled} labelled of {chosen.num_candidates} annotated images "
        f"({chosen.percent:g} %, seed {chosen.seed}, {chosen.source}) -> {output}"
    )
    _print_counts(counts)
    if to_ut is not None:
        typer.echo(f"Unbiased Teacher entry [{chosen.percent:g}][{chosen.seed}] written to {to_ut}")
    if data.train_json is not None and data.train_images is not None:
        starter = _write_starter_data_file(output, data.train_json, data.train_images)
        if starter is not None:
            typer.echo(f"dataset file (add your val and unlabelled images to it): {starter}")
            typer.echo(f"Train with: --data {starter}")
            return
    typer.echo(f"Train with: --split {output}" + (f" --data {data.data}" if data.data is not None else ""))
