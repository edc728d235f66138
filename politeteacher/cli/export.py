"""`politeteacher strip`: a lean, weights-only copy of a checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import app


@app.command("strip")
def strip(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A .pth checkpoint (any: periodic, "
                                               "final, best, CenterMask2 or Polite Teacher).")],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="File to write (default: CHECKPOINT's name with _weights, beside it); "
                     "never overwritten."),
    ] = None,
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

    out = strip_checkpoint(checkpoint, output, which=model)
    before, after = checkpoint.stat().st_size / 2**20, out.stat().st_size / 2**20
    typer.echo(f"{out} ({after:.1f} MiB, {100 * after / before:.0f} % of {checkpoint.name}'s {before:.1f} MiB)")
