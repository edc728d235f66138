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
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..errors import PoliteTeacherError
from .options import with_option_groups

from typer import Abort

try:  # recent typer carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError


def _readable(param) -> None:
    """Help as it reads best: a switch shows no value type (`--resume`, not `--resume <bool>`), and a
    positional argument shows its name only (not `<list[str]>`)."""
    if param is None:
        return
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    elif param.param_type_name == "argument":
        param.display_type_rich = lambda ctx: None


def _one_line_error(e: ClickException) -> None:
    """A usage error in the tool's own style: `error: ...` on one line, and where to look for help."""
    message = " ".join(e.format_message().split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(e, "ctx", None)
    if ctx is not None and isinstance(e, UsageError):
        message += f"; see `{ctx.command_path} --help`"
    print(f"error: {message}", file=sys.stderr)


class _ReadableHelp:
    """Help that reads best (see `_readable`) for a command or a group: its parameters and --help."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _readable(param)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _readable(option)
        return option


class Command(_ReadableHelp, TyperCommand):
    """A command whose help shows switches as switches, readable types, and `[KEY VALUE]...` in its
    usage line when it takes trailing config overrides."""

    def collect_usage_pieces(self, ctx) -> list:
        pieces = super().collect_usage_pieces(ctx)
        if (self.context_settings or {}).get("allow_extra_args"):
            pieces.append("[KEY VALUE]...")
        return pieces


class Group(_ReadableHelp, TyperGroup):
    """The command group: readable help like `Command`, and usage errors (an unknown option, an extra
    argument, a missing value) as one `error:` line with exit code 2 instead of a framed box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # the help, already printed
                if e.format_message().strip():
                    e.show()
            else:
                _one_line_error(e)
            sys.exit(e.exit_code)
        except Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class Typer(typer.Typer):
    """`typer.Typer` whose groups and commands are `Group` and `Command` unless told otherwise, and whose
    commands may take option groups (`options.with_option_groups`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(*args, **kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", Command)
        register = super().command(*args, **kwargs)
        return lambda function: register(with_option_groups(function))


app = Typer(
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


# Registering the commands, in the order `--help` lists them (a user's workflow); each module adds its own.
from . import (  # noqa: E402,F401
    check_data, split, train, evaluate, predict, pseudo_label, compare, plot, export, presets, doctor,
    demo,
)


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
