"""`politeteacher doctor`: is this machine ready to train, and where are the datasets looked up?"""
from __future__ import annotations

import platform
import sys
from typing import List, Tuple

import typer
from rich.console import Console
from rich.table import Table

from . import app

# (check, value, ok, fix)
Row = Tuple[str, str, bool, str]


def _detectron2_rows() -> List[Row]:
    try:
        import detectron2
    except ImportError as e:
        return [("detectron2", f"not importable ({e})", False,
                 "run `make env`, or `pip install sal-detectron2==0.7.2` for Python 3.10 + torch 2.3.1")]
    rows: List[Row] = [("detectron2", f"{detectron2.__version__} at {detectron2.__path__[0]}", True, "")]
    try:
        import torch
        from detectron2.layers import ROIAlign, batched_nms

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.1]])
        batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5)
        ROIAlign((2, 2), 1.0, 0, aligned=True)(torch.rand(1, 1, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4]]))
        rows.append(("detectron2 compiled ops", "load and run on CPU", True, ""))
    except Exception as e:  # any failure here means a broken build; say which
        rows.append(("detectron2 compiled ops", f"fail: {e}".splitlines()[0], False,
                     "reinstall detectron2 built for this torch (see README, 'Your own detectron2')"))
    return rows


def collect_checks(require_coco: bool = False) -> List[Row]:
    """Every check doctor prints; a row that is not ok and has a fix makes doctor fail."""
    rows: List[Row] = []
    py_ok = sys.version_info >= (3, 10)
    rows.append(("Python", f"{platform.python_version()} ({sys.executable})", py_ok,
                 "" if py_ok else "use Python 3.10 (`make env` finds it under pyenv)"))
    try:
        import torch
        import torchvision

        rows.append(("torch", f"{torch.__version__}, torchvision {torchvision.__version__}", True, ""))
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        cuda = f"CUDA {torch.version.cuda}, {n} GPU(s)" if n else "no GPU: training runs on the CPU"
        rows.append(("CUDA", cuda, True, ""))
    except ImportError as e:
        rows.append(("torch", f"not importable ({e})", False, "run `make env`"))
    rows += _detectron2_rows()
    from ..data.datasets import dataset_presence

    for name, (where, present) in dataset_presence().items():
        fix = "" if present else (
            f"put COCO under {where} or point DETECTRON2_DATASETS at its parent (see README)"
        )
        rows.append((f"dataset {name}", f"{'found' if present else 'missing'}: {where}", present,
                     fix if require_coco else ""))
    return rows


@app.command()
def doctor(
    require_coco: bool = typer.Option(False, "--require-coco", help="Fail when COCO 2017 is missing."),
) -> None:
    """Check Python, torch, CUDA, detectron2 and where datasets are looked up."""
    rows = collect_checks(require_coco)
    table = Table("check", "value", "", "fix")
    for check, value, ok, fix in rows:
        mark = "[green]ok[/]" if ok else ("[red]FAIL[/]" if fix else "[yellow]--[/]")
        table.add_row(check, value, mark, fix)
    Console().print(table)
    failed = [r for r in rows if not r[2] and r[3]]
    if failed:
        Console(stderr=True).print(f"[red]{len(failed)} required check(s) failed[/]; see the fix column")
        raise typer.Exit(1)
