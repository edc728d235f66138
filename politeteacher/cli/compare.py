"""`politeteacher compare`, and the table that ends a `train-ssl --sweep`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence

import typer
from typing_extensions import Annotated

from . import app
from .options import output_dir_option

OutputDirOpt = output_dir_option("Folder for ap_curves.png (default: runs/compare/<run>+<run>...).")


def show_comparison(run_dirs: Sequence[Path], plot_path: Path) -> None:
    """Print the comparison table of `run_dirs` and write their AP curves to `plot_path`."""
    from ..evaluation.compare import compare_runs, format_comparison, plot_ap_curves
    from ..errors import PoliteTeacherError

    comparison = compare_runs(run_dirs)
    typer.echo(format_comparison(comparison))
    try:
        typer.echo(f"AP curves: {plot_ap_curves(comparison, plot_path)}")
    except PoliteTeacherError as e:  # no run evaluated yet: the table says what there is
        typer.echo(f"no AP curves: {e}")


def sweep_and_compare(specs: Sequence[str], cfg, train: Callable[[object], Dict], show: bool = True) -> List[Path]:
    """`train-ssl --sweep`: the runs one after another, then the comparison of all of them (the AP
    curves in the sweep's folder)."""
    from ..evaluation.compare import AP_CURVES_FILE
    from ..engine.sweep import run_sweep

    folders = run_sweep(cfg, specs, train, announce=typer.echo if show else (lambda line: None))
    if show:
        show_comparison(folders, Path(cfg.OUTPUT_DIR) / AP_CURVES_FILE)
    return folders


@app.command("compare")
def compare(
    run_dirs: Annotated[List[Path], typer.Argument(metavar="RUN", help="Run folders; a folder of runs (a --sweep's) stands for all of them.")],
    output_dir: OutputDirOpt = None,
) -> None:
    """Compare training runs: best and final AP, pseudo-label statistics, the config keys that differ.

    Teacher and student AP (best, with its iteration, and final), the pseudo-label statistics averaged
    over each run, the config keys whose values differ, and one plot of the runs' AP curves."""
    from ..evaluation.compare import AP_CURVES_FILE, default_compare_dir

    show_comparison(run_dirs, (output_dir or default_compare_dir(run_dirs)) / AP_CURVES_FILE)
