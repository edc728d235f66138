"""Reading and writing the data layer's JSON files: atomic writes, one-line errors."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import PoliteTeacherError


def write_json_atomic(obj, path: Path, **dump_kw) -> None:
    """Write ``obj`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, **dump_kw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def invalid_json(path, e: json.JSONDecodeError, expected: str) -> PoliteTeacherError:
    return PoliteTeacherError(
        f"{path} is not valid JSON (line {e.lineno}, column {e.colno}): expected {expected}"
    )


def read_json(path: Path, expected: str):
    """The parsed file; a one-line PoliteTeacherError naming it when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise PoliteTeacherError(f"{path} not found: expected {expected}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise invalid_json(path, e, expected) from e
