"""The `politeteacher` command: one verb per task, each a thin layer over the Python API."""
from __future__ import annotations

import os
import sys

# OpenMP threads that spin while they wait made a training step on 2 shared CPU cores 11 times slower
# (4.6 vs 0.41 s/it) whenever another process took a core; waiting passively costs little when the
# cores are free. OpenMP reads this once, when torch loads it, so it is set before any import of torch;
# a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.console import Console

from .. import __version__
from ..errors import PoliteTeacherError

app = typer.Typer(
    name="politeteacher",
    help="Semi-supervised instance segmentation: CenterMask trained with Polite Teacher, on detectron2.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"politeteacher {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Semi-supervised instance segmentation: CenterMask trained with Polite Teacher, on detectron2."""


# Registering the commands; each module adds its own to `app`.
from . import demo, doctor, evaluate, plot, predict, presets, split, train, train_ssl  # noqa: E402,F401


def main() -> None:
    """Console entry point: bad input ends in one clear line and a non-zero exit, not a traceback."""
    try:
        app()
    except PoliteTeacherError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; checkpoints already written are kept")
        sys.exit(130)
