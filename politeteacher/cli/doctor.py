"""`politeteacher doctor`: is this machine ready to train, and where are the datasets looked up?"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import app


class Row(NamedTuple):
    """One line of doctor's table. A row that is not ok has a fix; it makes doctor fail when required."""

    check: str
    value: str
    ok: bool
    fix: str
    required: bool = True


def count_images(folder: Path) -> int:
    """Image files directly in ``folder``."""
    from ..io import IMAGE_EXTENSIONS

    with os.scandir(folder) as entries:
        return sum(1 for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())


def _detectron2_rows() -> List[Row]:
    try:
        import detectron2
    except ImportError as e:
        return [Row("detectron2", f"not importable ({e})", False,
                 "run `make env`, or `pip install sal-detectron2==0.7.2` for Python 3.10 + torch 2.3.1")]
    rows: List[Row] = [Row("detectron2", f"{detectron2.__version__} at {detectron2.__path__[0]}", True, "")]
    try:
        import torch
        from detectron2.layers import ROIAlign, batched_nms

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.1]])
        batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5)
        ROIAlign((2, 2), 1.0, 0, aligned=True)(torch.rand(1, 1, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4]]))
        rows.append(Row("detectron2 compiled ops", "load and run on CPU", True, ""))
    except Exception as e:  # any failure here means a broken build; say which
        rows.append(Row("detectron2 compiled ops", f"fail: {e}".splitlines()[0], False,
                     "reinstall detectron2 built for this torch (see README, 'Your own detectron2')"))
    return rows


def _data_file_rows(data: Path) -> List[Row]:
    """The dataset file's sets: found, with image counts, or what is wrong (a quick look: files are
    listed, not decoded; `check-data` decodes them)."""
    from ..data.datasets import load_annotations
    from ..data.report import named_sets
    from ..errors import PoliteTeacherError
    from .options import DataOptions

    deep = f"for every image decoded and the labels drawn: politeteacher check-data --data {data}"
    try:
        sets, unlabeled_folders = named_sets(DataOptions(data=data).overrides())
    except PoliteTeacherError as e:
        return [Row("data file", str(data), False, str(e))]
    rows = [Row("data file", str(Path(data).absolute()), True, "")]
    for role, name in sets:
        try:
            dicts = load_annotations(name)
        except PoliteTeacherError as e:
            rows.append(Row(f"data {role}", name, False, str(e)))
            continue
        missing = sum(1 for d in dicts if not os.path.isfile(d["file_name"]))
        value = f"{name}: {len(dicts)} images, {sum(len(d.get('annotations', [])) for d in dicts)} annotations"
        rows.append(Row(f"data {role}", value + (f", {missing} image file(s) missing" if missing else ""),
                        not missing, deep if missing else ""))
    for folder in unlabeled_folders:
        rows.append(Row("data unlabelled", f"{count_images(Path(folder))} images in {folder}", True, ""))
    return rows


def collect_checks(require_coco: bool = False, data: Optional[Path] = None) -> List[Row]:
    """Every check doctor prints; a row that is not ok says how to fix it, and makes doctor fail when it
    is required (COCO only with ``require_coco``; the OpenMP hint never)."""
    rows: List[Row] = []
    py_ok = sys.version_info >= (3, 10)
    rows.append(Row("Python", f"{platform.python_version()} ({sys.executable})", py_ok,
                 "" if py_ok else "use Python 3.10 (`make env` finds it under pyenv)"))
    try:
        import torch
        import torchvision

        rows.append(Row("torch", f"{torch.__version__}, torchvision {torchvision.__version__}", True, ""))
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        cuda = f"CUDA {torch.version.cuda}, {n} GPU(s)" if n else "no GPU: training runs on the CPU"
        rows.append(Row("CUDA", cuda, True, ""))
    except ImportError as e:
        rows.append(Row("torch", f"not importable ({e})", False, "run `make env`"))
    rows += _detectron2_rows()
    omp = os.environ.get("OMP_WAIT_POLICY")
    rows.append(Row("OMP_WAIT_POLICY", omp or "unset", bool(omp),
                    "the politeteacher command sets PASSIVE itself; with the Python API on a shared CPU, "
                    "export OMP_WAIT_POLICY=PASSIVE before importing torch (spinning OpenMP threads can make "
                    "a step several times slower; README, 'Benchmarks')", required=False))
    from ..data.datasets import coco_locations

    for name, (json_file, image_root) in coco_locations().items():
        json_file, image_root = json_file.absolute(), image_root.absolute()
        present = json_file.is_file() and image_root.is_dir()
        if present:
            value = f"found: {count_images(image_root)} images in {image_root}, annotations {json_file}"
            fix = ""
        else:
            lacking = [str(p) for p in (image_root, json_file) if not p.exists()]
            value = f"missing: {' and '.join(lacking) or image_root}"
            fix = ("put COCO 2017 there, or point DETECTRON2_DATASETS at the folder holding coco/ "
                   "(README, 'Getting COCO'); needed for COCO only")
        rows.append(Row(f"dataset {name}", value, present, fix, required=require_coco))
    if data is not None:
        rows += _data_file_rows(data)
    return rows


@app.command()
def doctor(
    require_coco: bool = typer.Option(False, "--require-coco", help="Fail when COCO 2017 is missing."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE", help="Also check this dataset file."),
) -> None:
    """Check Python, torch, CUDA, detectron2, where datasets are looked up, and a dataset file."""
    rows = collect_checks(require_coco, data)
    table = Table()
    table.add_column("check", no_wrap=True)
    table.add_column("value", overflow="fold")  # long paths wrap, never cut
    table.add_column("", no_wrap=True)
    table.add_column("fix", overflow="fold")
    for check, value, ok, fix, required in rows:
        mark = "[green]ok[/]" if ok else ("[red]FAIL[/]" if required else "[yellow]--[/]")
        table.add_row(check, value, mark, fix)
    Console().print(table)
    failed = [r for r in rows if not r.ok and r.required]
    if failed:
        Console(stderr=True).print(f"[red]{len(failed)} required check(s) failed[/]; see the fix column")
        raise typer.Exit(1)
