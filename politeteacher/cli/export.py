"""`politeteacher strip` (a lean, weights-only copy of a checkpoint) and `politeteacher export`
(TorchScript / ONNX)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import app
from ..errors import PoliteTeacherError
from .options import EXTRA_ARGS, MODEL, CheckpointOpt, DeviceOpt, OldOutputOpt, deprecated_alias, output_dir_option
from .predict import DEFAULT_PRESET
from .resolve import checkpoint_cfg, config_overrides_only

StripOutputOpt = output_dir_option("File to write, or a folder to write it into (default: CHECKPOINT's name with "
                                   "_weights, beside it); never overwritten.")
ExportOutputOpt = output_dir_option("File to write, or a folder to write it into (default: the checkpoint's name "
                                    "with .ts / .onnx, beside it); never overwritten. <file>.json beside it says "
                                    "what goes in and out.")


def output_file(output_dir: Optional[Path], output: Optional[Path], default_name: str) -> Optional[Path]:
    """The file strip or export writes: -o/--output-dir (or the old --output) names it, or an existing
    folder to write `default_name` into; None when neither is given."""
    target = deprecated_alias(output, output_dir, "--output", "--output-dir")
    return target / default_name if target is not None and target.is_dir() else target


@app.command("strip")
def strip(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A .pth checkpoint (any: periodic, "
                                               "final, best, CenterMask2 or Polite Teacher).")],
    output_dir: StripOutputOpt = None,
    output: OldOutputOpt = None,
    model: Annotated[
        str, typer.Option("--model", help="Of a two-model (Polite Teacher) checkpoint: both (loadable with "
                          "--model teacher or student), teacher or student (that one alone, half the size).")
    ] = "both",
) -> None:
    """Write the weights of a checkpoint without the trainer state (optimiser, scheduler, hooks).

    The file keeps the run's config and classes, so eval, predict and train-ssl --weights use it as they
    use the checkpoint, also away from its run folder.
    """
    from ..engine.checkpoint import strip_checkpoint

    target = output_file(output_dir, output, f"{checkpoint.stem}_weights.pth")
    out = strip_checkpoint(checkpoint, target, which=model)
    before, after = checkpoint.stat().st_size / 2**20, out.stat().st_size / 2**20
    typer.echo(f"{out} ({after:.1f} MiB, {100 * after / before:.0f} % of {checkpoint.name}'s {before:.1f} MiB)")


@app.command("export", context_settings=EXTRA_ARGS)
def export(
    ctx: typer.Context,
    weights: CheckpointOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="torchscript, or onnx (needs the export extra: onnx, onnxruntime).")] = "torchscript",
    output_dir: ExportOutputOpt = None,
    output: OldOutputOpt = None,
    samples: Annotated[
        Optional[List[Path]],
        typer.Option("--sample", metavar="IMAGE", help="Image to trace and check the export on (repeatable; default: "
                     "two generated ones)."),
    ] = None,
    model=MODEL,
    device: DeviceOpt = None,
) -> None:
    """Export a checkpoint's model (frozen batch norm folded) to TorchScript or ONNX.

    The file takes one resized image (CHW float32, 0-255) and returns the detections at that size.
    It is checked against the PyTorch model on the sample images before it is written.
    The README shows how to run it with torch.jit.load or onnxruntime.
    """
    from ..inference.export import SUFFIX, export_model

    overrides = config_overrides_only(ctx.args)
    weights, cfg = checkpoint_cfg(weights, overrides, model, default_preset=DEFAULT_PRESET, device=device)
    if fmt not in SUFFIX:
        raise PoliteTeacherError(f"--format must be torchscript or onnx, got '{fmt}'")
    default = Path(weights).with_suffix(SUFFIX[fmt])
    target = output_file(output_dir, output, default.name) or default
    report = export_model(cfg, weights, target, fmt=fmt, which=model.which, samples=samples or ())
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in report.differences.items())
    typer.echo(f"{report.path} ({fmt}, {model.which}); checked on {report.samples} image(s), largest differences: {diffs}")
    typer.echo(f"inputs, outputs and classes: {report.sidecar}")
