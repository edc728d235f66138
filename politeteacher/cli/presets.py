"""`politeteacher presets list|show`."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..presets import preset_path, presets_by_family
from . import Typer, app
from .options import EXTRA_ARGS
from .resolve import config_overrides_only

presets_app = Typer(help="List and show the built-in presets.", no_args_is_help=True)
app.add_typer(presets_app, name="presets")


@presets_app.command("list")
def list_() -> None:
    """List the built-in presets by model family, with what each is for."""
    console = Console()
    for family, presets in presets_by_family().items():
        table = Table(title=family, title_justify="left", title_style="bold")
        table.add_column("preset", no_wrap=True)
        table.add_column("what it is for")
        for name, description in presets.items():
            table.add_row(name, description)
        console.print(table)


@presets_app.command("show", context_settings=EXTRA_ARGS)
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Preset name."),
    resolved: bool = typer.Option(False, "--resolved", help="Print the full config with every default."),
) -> None:
    """Print a preset's YAML (or, with --resolved or trailing `KEY VALUE` overrides, the full config it
    gives)."""
    overrides = config_overrides_only(ctx.args)
    if resolved or overrides:
        from ..config import resolve_config

        typer.echo(resolve_config(name, overrides=overrides).dump())
    else:
        typer.echo(preset_path(name).read_text())
