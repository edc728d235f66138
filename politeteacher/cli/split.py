"""`politeteacher split`: choose the labelled images of a dataset, or import/export Unbiased Teacher's."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import PoliteTeacherError
from . import app
from .common import DatasetOpt, TrainImagesOpt, TrainJsonOpt


def _dataset_argument(dataset: Optional[str], train_json: Optional[Path], train_images: Optional[Path]) -> str:
    if train_json is not None:
        if dataset is not None:
            raise PoliteTeacherError("pass either --dataset or --train-json, not both")
        if train_images is not None and not train_images.is_dir():
            raise PoliteTeacherError(f"image folder {train_images} not found; pass the folder of --train-json's images")
        return str(train_json.expanduser().resolve())
    return dataset or "coco_2017_train"


def _check_output(split, output: Path, force: bool) -> None:
    from ..data.splits import Split

    if output.exists() and not force:
        try:
            same = Split.load(output).image_ids == split.image_ids
        except PoliteTeacherError:
            same = False
        if not same:
            raise PoliteTeacherError(
                f"{output} already exists with another split; pass another --output, or --force to replace it"
            )


@app.command()
def split(
    percent: float = typer.Option(..., "--percent", help="Percent of the annotated images to label, in (0, 100)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the random choice (the paper uses 1)."),
    dataset: DatasetOpt = None,
    train_json: TrainJsonOpt = None,
    train_images: TrainImagesOpt = None,
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Split file to write (default splits/<dataset>_<P>pct_seed<S>.json)."
    ),
    from_ut: Optional[Path] = typer.Option(
        None, "--from-ut", help="Import this (percent, seed) from Unbiased Teacher's COCO_supervision.txt."
    ),
    to_ut: Optional[Path] = typer.Option(
        None, "--to-ut", help="Also write the split into an Unbiased Teacher file (other entries kept)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different split file."),
) -> None:
    """Pick the labelled images of a dataset (percent, seed) and write a split file."""
    from ..data.jsonio import write_jsons_atomic
    from ..data.splits import import_ut, make_split, ut_file_data

    source = _dataset_argument(dataset, train_json, train_images)
    if from_ut is not None and not from_ut.is_file():
        raise PoliteTeacherError(f"{from_ut} not found; pass Unbiased Teacher's COCO_supervision.txt")
    chosen = import_ut(from_ut, source, percent, seed) if from_ut else make_split(source, percent, seed)
    stem = Path(chosen.dataset).stem if train_json else chosen.dataset
    output = output or Path("splits") / f"{stem}_{chosen.percent:g}pct_seed{chosen.seed}.json"
    _check_output(chosen, output, force)
    files = [(chosen.to_json(), output, {"indent": 1})]
    if to_ut is not None:
        files.append((ut_file_data(chosen, to_ut, source), to_ut, {}))
    write_jsons_atomic(files)  # both files or neither
    typer.echo(
        f"{chosen.num_labeled} labelled of {chosen.num_candidates} annotated images "
        f"({chosen.percent:g} %, seed {chosen.seed}, {chosen.source}) -> {output}"
    )
    if to_ut is not None:
        typer.echo(f"Unbiased Teacher entry [{chosen.percent:g}][{chosen.seed}] written to {to_ut}")
    typer.echo(f"Train with: --split {output}")
