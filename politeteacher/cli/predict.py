"""`politeteacher predict`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import app
from ..errors import PoliteTeacherError
from .options import (
    EXTRA_ARGS, MODEL, CheckpointOpt, DeviceOpt, OldOutputOpt, deprecated_alias, images_argument,
    output_dir_option,
)
from .resolve import checkpoint_cfg, images_and_overrides, output_dir_override

DEFAULT_PRESET = "baseline_sup10"
ImagesArg = images_argument()
OutputDirOpt = output_dir_option("Folder for overlays and results (default: runs/predict); when it holds earlier "
                                 "results, the next free numbered one (runs/predict2, ...).")


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
    images: ImagesArg = None,
    weights: CheckpointOpt = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Keep detections with score >= this.")] = 0.5,
    output_dir: OutputDirOpt = None,
    output: OldOutputOpt = None,
    batch_size: Annotated[
        Optional[int], typer.Option("--batch-size", help="Images per forward pass (default: 8 on a GPU, 2 on the CPU).")
    ] = None,
    classes: Annotated[
        Optional[List[str]],
        typer.Option("--classes", metavar="NAME", help="Keep these classes only (repeatable, or comma-separated)."),
    ] = None,
    no_overlays: Annotated[bool, typer.Option("--no-overlays", help="Write no overlay images (nor annotated videos).")] = False,
    save_masks: Annotated[
        bool, typer.Option("--save-masks", help="One PNG per instance, masks/<image>_<k>.png (k: its place in the "
                           "image's predictions, whose JSON entry names the file).")
    ] = False,
    save_txt: Annotated[
        bool, typer.Option("--save-txt", help="predictions.csv: one row per instance (file, class, score, mask score, box).")
    ] = False,
    webcam: Annotated[
        Optional[int], typer.Option("--webcam", metavar="N", help="Segment camera N (0: the first) instead of files: a "
                                    "window, or frames written as PNGs where there is no display; Ctrl-C stops.")
    ] = None,
    model=MODEL,
    data: Annotated[
        Optional[Path], typer.Option("--data", metavar="FILE", help="Dataset file whose class names to use.")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Registered dataset whose class names to use.")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Segment images and videos (or a camera): overlays and a COCO results JSON.

    Without --weights, the newest run's model_best.pth (else model_final.pth) under runs/ is used.
    The config is --preset/--config-file if given, else the config.yaml of the checkpoint's run.

    Nothing is overwritten: a folder holding earlier results gives the next numbered one, a folder
    holding input images is refused, and an overlay whose name is taken gets a suffix (_2, ...).
    Results are also appended to predictions.jsonl image by image, so a stopped run keeps them.
    A video file (mp4, avi, mkv, ...) gives an annotated video and results per frame.
    """
    from ..predict import predict as run_predict, predict_webcam

    items, overrides = images_and_overrides(images, ctx.args, "predict")
    if not items and webcam is None:
        raise PoliteTeacherError("no images given; pass image files, folders or glob patterns")
    if items and webcam is not None:
        raise PoliteTeacherError("--webcam takes no image files; pass either files or --webcam N")
    output_dir = deprecated_alias(output, output_dir, "--output", "--output-dir")
    output_dir, overrides = output_dir_override(output_dir, overrides)
    output_dir = output_dir or Path("runs/predict")
    weights, cfg = checkpoint_cfg(weights, overrides, model, default_preset=DEFAULT_PRESET, device=device,
                                  data_flags=class_name_overrides(data, dataset))
    if webcam is not None:
        report = predict_webcam(cfg, webcam, weights, output_dir, threshold=threshold, which=model.which,
                                classes=classes, save_masks=save_masks, save_txt=save_txt)
    else:
        report = run_predict(cfg, items, weights, output_dir, threshold=threshold, which=model.which,
                             batch_size=batch_size, classes=classes, overlays=not no_overlays,
                             save_masks=save_masks, save_txt=save_txt)
    for path, why in report.skipped:
        typer.echo(f"skipped {path}: {why}", err=True)
    typer.echo(
        f"{report.num_images} image(s), {report.num_detections} detection(s) with score >= {threshold:g} "
        f"from {weights} ({model.which}), {report.images_per_s:.2f} images/s"
    )
    if report.predictions_json is None:
        typer.echo(f"no frame was read; nothing written to {report.output_dir}")
        return
    written = ([] if no_overlays else ["overlays"]) + [report.predictions_json.name, report.images_json.name,
                                                       report.stream.name]
    written += ["masks/"] if save_masks else []
    written += [report.csv.name] if report.csv else []
    typer.echo(f"results: {report.output_dir} ({', '.join(written)})")
