"""`politeteacher pseudo-label`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import app
from ..errors import PoliteTeacherError
from .options import EXTRA_ARGS, MODEL, CheckpointOpt, DatasetOpt, DeviceOpt, images_argument, output_dir_option
from .resolve import checkpoint_cfg, images_and_overrides, output_dir_override

DEFAULT_PRESET = "polite_teacher_sup10"
ImagesArg = images_argument(" (not with --sweep)")
OutputDirOpt = output_dir_option("Folder for the results (default: runs/pseudo-label); when it holds earlier "
                                 "results, the next free numbered one.")


def _annotated_images(data: Path, dataset, json_file, image_dir):
    """(dataset name, JSON, image folder) for the sweep from a dataset file: its validation set (images
    the teacher did not train on), else its training set."""
    from ..data.data_file import load_data_file

    if dataset is not None or json_file is not None or image_dir is not None:
        raise PoliteTeacherError("--data says which images to sweep over; drop --dataset / --json / --images")
    loaded = load_data_file(data)
    if loaded.val_json or loaded.val:
        return loaded.val or None, loaded.val_json, loaded.val_images
    if loaded.train_json or loaded.train:
        return loaded.train or None, loaded.train_json, loaded.train_images
    raise PoliteTeacherError(f"dataset file {loaded.path} names no annotated images; add val_json and val_images")


@app.command("pseudo-label", context_settings=EXTRA_ARGS)
def pseudo_label(
    ctx: typer.Context,
    images: ImagesArg = None,
    weights: CheckpointOpt = None,
    box_threshold: Annotated[
        Optional[float],
        typer.Option("--box-threshold", help="Pseudo box when score > this (default: the run's "
                     "SEMISUPERVISED.BOX_THRESHOLD)."),
    ] = None,
    mask_iou_threshold: Annotated[
        Optional[float],
        typer.Option("--mask-iou-threshold", help="Valid pseudo mask when predicted mask IoU > this (default: "
                     "the run's SEMISUPERVISED.MASK_IOU_THRESHOLD)."),
    ] = None,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Compare a grid of thresholds with ground truth (needs --dataset, "
                           "or --json and --images).")
    ] = False,
    dataset: DatasetOpt = None,
    data: Annotated[
        Optional[Path], typer.Option("--data", metavar="FILE", help="Dataset file whose annotated images to sweep "
                                     "over: its val set, else its train set (--sweep).")
    ] = None,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="COCO JSON of annotated images (--sweep).")] = None,
    image_dir: Annotated[Optional[Path], typer.Option("--images", help="Folder of the --json images (--sweep).")] = None,
    box_thresholds: Annotated[
        str, typer.Option("--box-thresholds", help="Box thresholds of the sweep, comma-separated.")
    ] = "0.4,0.5,0.6,0.7,0.8,0.9",
    mask_iou_thresholds: Annotated[
        str, typer.Option("--mask-iou-thresholds", help="Mask-IoU thresholds of the sweep, comma-separated.")
    ] = "0,0.5,0.7,0.8,0.9",
    max_images: Annotated[int, typer.Option("--max-images", help="Sweep over the first N images.")] = 200,
    output_dir: OutputDirOpt = None,
    model=MODEL,
    device: DeviceOpt = None,
) -> None:
    """See the teacher's pseudo-labels, as train-ssl makes them, or choose the thresholds from data.

    On images: overlays (valid masks filled, invalid masks as boxes, rejected detections dotted),
    pseudo_labels.json (COCO, each label with score, mask_iou, mask_valid) and histograms.png.

    With --sweep on annotated images: per pair of thresholds, pseudo-labels per image, box and mask
    precision and recall at IoU 0.5 and the valid-mask fraction (sweep.json, sweep.png), and a
    suggested pair. The model runs once per image.

    The config is --preset/--config-file if given, else the config.yaml of the checkpoint's run.
    """
    from ..engine.threshold_sweep import format_table, parse_grid

    items, overrides = images_and_overrides(images, ctx.args, "pseudo-label")
    if data is not None:
        dataset, json_file, image_dir = _annotated_images(data, dataset, json_file, image_dir)
    output_dir, overrides = output_dir_override(output_dir, overrides)
    weights, cfg = checkpoint_cfg(weights, overrides, model, default_preset=DEFAULT_PRESET, device=device)
    out = output_dir or Path("runs/pseudo-label")
    if sweep:
        if items:
            raise PoliteTeacherError("--sweep reads annotated images from --dataset or --json/--images; "
                                     f"drop the image arguments ({' '.join(items[:3])})")
        if box_threshold is not None or mask_iou_threshold is not None:
            raise PoliteTeacherError("--sweep tries a grid: use --box-thresholds / --mask-iou-thresholds "
                                     "instead of --box-threshold / --mask-iou-threshold")
        boxes, masks = parse_grid(box_thresholds, "--box-thresholds"), parse_grid(mask_iou_thresholds,
                                                                                  "--mask-iou-thresholds")
        from ..pseudo_label import sweep as run_sweep

        report = run_sweep(cfg, weights, out, dataset=dataset,
                           json_file=str(json_file.expanduser().resolve()) if json_file else None,
                           images=str(image_dir.expanduser().resolve()) if image_dir else None,
                           box_thresholds=boxes, mask_iou_thresholds=masks, max_images=max_images, which=model.which)
        typer.echo(f"{report.num_images} image(s), teacher of {weights} ({model.which}); at IoU 0.5 "
                   "('-': nothing to measure):")
        typer.echo(format_table(report.rows, report.suggested))
        if report.suggested is None:
            typer.echo("no suggestion: no pseudo box matched the ground truth at any threshold")
        else:
            s = report.suggested
            typer.echo(f"suggested (*): SEMISUPERVISED.BOX_THRESHOLD {s['box_threshold']:g} "
                       f"SEMISUPERVISED.MASK_IOU_THRESHOLD {s['mask_iou_threshold']:g}")
            typer.echo(f"rule: {report.rule}")
        typer.echo(f"results: {report.output_dir} ({report.sweep_json.name}, {report.heatmap.name})")
        return
    if dataset is not None or json_file is not None or image_dir is not None:
        raise PoliteTeacherError("--dataset, --data, --json and --images go with --sweep; add --sweep, or pass "
                                 "image files")
    if not items:
        raise PoliteTeacherError("no images given; pass image files, folders or glob patterns (or --sweep)")
    from ..pseudo_label import pseudo_label as run_pseudo_label

    report = run_pseudo_label(cfg, items, weights, out, box_threshold, mask_iou_threshold, which=model.which)
    for path, why in report.skipped:
        typer.echo(f"skipped {path}: {why}", err=True)
    typer.echo(
        f"{len(report.overlays)} image(s): {report.num_labels} pseudo-label(s) with score > {report.box_threshold:g}, "
        f"{report.num_valid} with a valid mask (mask IoU > {report.mask_iou_threshold:g}), "
        f"{report.num_rejected} detection(s) rejected; teacher of {weights} ({model.which})"
    )
    typer.echo(f"results: {report.output_dir} (overlays, {report.labels_json.name}, {report.histograms.name})")
