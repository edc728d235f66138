"""`politeteacher predict`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import app
from ..errors import PoliteTeacherError
from .common import (
    EXTRA_ARGS, CheckpointOpt, ConfigFileOpt, DataFileOpt, DatasetOpt, DeviceOpt, OldOutputOpt, PresetOpt,
    deprecated_alias, split_overrides,
)
from .training_options import ModelOpt, inference_cfg, output_dir_override, weights_or_latest_run

DEFAULT_PRESET = "baseline_sup10"


def class_name_overrides(data: Optional[Path], dataset: Optional[str]) -> List[str]:
    """Overrides naming the classes after a dataset file (its `classes`, else its training JSON's
    categories, with their ids) or a registered dataset, instead of the run's config.yaml."""
    from ..data.data_file import load_data_file

    if data is not None and dataset is not None:
        raise PoliteTeacherError("--data and --dataset both say where the class names come from; pass one")
    if data is not None:
        loaded = load_data_file(data)
        if not (loaded.classes or loaded.train_json or loaded.train):
            raise PoliteTeacherError(f"dataset file {loaded.path} has no classes, train_json or train to name the "
                                     "classes after; add one")
        if loaded.classes or loaded.train_json:
            json_file = [] if loaded.train_json is None else ["DATASETS.CUSTOM.TRAIN_JSON", str(loaded.train_json)]
            return [*json_file, "DATASETS.CLASS_NAMES", repr(loaded.class_names())]
        dataset = loaded.train
    if dataset is not None:
        return ["DATASETS.TRAIN", repr((dataset,)), "DATASETS.CUSTOM.TRAIN_JSON", "", "DATASETS.CLASS_NAMES", "[]"]
    return []


@app.command("predict", context_settings=EXTRA_ARGS)
def predict(
    ctx: typer.Context,
    images: Annotated[
        Optional[List[str]],
        typer.Argument(metavar="IMAGE|FOLDER|GLOB", show_default=False,
                       help="Image files, folders of images or glob patterns; trailing KEY VALUE pairs "
                       "override config keys."),
    ] = None,
    weights: CheckpointOpt = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Keep detections with score >= this.")] = 0.5,
    output_dir: Annotated[
        Optional[Path],
        typer.Option("--output-dir", "-o", help="Folder for overlays and results (default: runs/predict); when "
                     "it holds earlier results, the next free numbered one (runs/predict2, ...)."),
    ] = None,
    output: OldOutputOpt = None,
    model: ModelOpt = "teacher",
    preset: PresetOpt = None,
    config_file: ConfigFileOpt = None,
    data: Annotated[
        Optional[Path], typer.Option("--data", metavar="FILE", help="Dataset file whose class names to use.")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Registered dataset whose class names to use.")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Segment images: overlays and a COCO results JSON.

    Without --weights, the newest run's model_best.pth (else model_final.pth) under runs/ is used.
    The config is --preset/--config-file if given, else the config.yaml of the checkpoint's run.

    Nothing is overwritten: a folder holding earlier results gives the next numbered one, a folder
    holding input images is refused, and an overlay whose name is taken gets a suffix (_2, ...).
    Results are also appended to predictions.jsonl image by image, so a stopped run keeps them.
    """
    from ..predict import predict as run_predict

    items, overrides = split_overrides([*(images or []), *ctx.args])
    unknown = [t for t in items if t.startswith("-") and not Path(t).exists()]
    if unknown:
        raise PoliteTeacherError(f"unknown option(s) {' '.join(unknown)}; see `politeteacher predict --help`")
    if not items:
        raise PoliteTeacherError("no images given; pass image files, folders or glob patterns")
    output_dir = deprecated_alias(output, output_dir, "--output", "--output-dir")
    output_dir, overrides = output_dir_override(output_dir, overrides)
    weights = weights_or_latest_run(weights)
    cfg = inference_cfg(weights, overrides, default_preset=DEFAULT_PRESET, preset=preset,
                        config_file=config_file, device=device, data_flags=class_name_overrides(data, dataset))
    report = run_predict(cfg, items, weights, output_dir or Path("runs/predict"), threshold=threshold, which=model)
    for path, why in report.skipped:
        typer.echo(f"skipped {path}: {why}", err=True)
    typer.echo(
        f"{len(report.overlays)} image(s), {report.num_detections} detection(s) with score >= {threshold:g} "
        f"from {weights} ({model})"
    )
    typer.echo(f"results: {report.output_dir} (overlays, {report.predictions_json.name}, "
               f"{report.images_json.name}, {report.stream.name})")
