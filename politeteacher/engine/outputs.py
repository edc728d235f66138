"""Output folders of `eval`, `predict` and `plot`: made when missing and checked up front, so that a
folder the user cannot write to is one clear error line, not a traceback halfway through the work."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import PoliteTeacherError


def writable_folder(folder: os.PathLike | str, option: str) -> Path:
    """`folder`, created (with its parents) when missing, once a file could be made in it; else a
    PoliteTeacherError naming it and `option`, the flag that picks another one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PoliteTeacherError(f"output folder {folder} is a file; pass another {option}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # unnamed where the OS allows: nothing is left behind
            pass
    except OSError as e:
        raise PoliteTeacherError(
            f"cannot write to output folder {folder} ({e.strerror or e}); pass another {option}"
        ) from e
    return folder
