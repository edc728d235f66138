"""Reading and writing the data layer's JSON (and text) files: atomic writes, one-line errors."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, List, Mapping, Sequence, Tuple

from ..errors import PoliteTeacherError


def _write_temporary(path: Path, write: Callable[[IO[str]], Any]) -> Path:
    """Write a new temporary file beside ``path`` with ``write(f)`` and return its name."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for any file the user creates
    # (tempfile.mkstemp would make it 0600, and the rename would keep that).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_files_atomic(files: Sequence[Tuple[Path, Callable[[IO[str]], Any]]]) -> None:
    """Write several text files, all or none: each ``(path, write)`` goes to a temporary file beside
    its target (``write(f)`` fills it), and the targets are replaced (renamed over) only once every
    one is written. A place that cannot be written is a one-line PoliteTeacherError, and then no
    target has changed and no folder was left behind."""
    done: List[Tuple[Path, Path]] = []
    created: List[Path] = []
    try:
        for path, write in files:
            path = Path(path)
            current = Path(os.path.abspath(path.parent))
            try:
                missing = [p for p in (current, *current.parents) if not p.exists()]
                for folder in reversed(missing):
                    folder.mkdir()
                    created.append(folder)
                done.append((_write_temporary(path, write), path))
            except OSError as e:
                raise PoliteTeacherError(
                    f"cannot write {path} ({e.strerror or e}): choose a writable folder"
                ) from e
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: not ours to remove
        raise


def write_jsons_atomic(files: Sequence[Tuple[Any, Path, Mapping[str, Any]]]) -> None:
    """:func:`write_files_atomic` for JSON: each ``(obj, path, json.dump keywords)``."""
    write_files_atomic([(Path(path), lambda f, o=obj, kw=dump_kw: json.dump(o, f, **kw)) for obj, path, dump_kw in files])


def write_json_atomic(obj, path: Path, **dump_kw) -> None:
    """Write ``obj`` as JSON to a temporary file beside ``path``, then rename it into place."""
    write_jsons_atomic([(obj, path, dump_kw)])


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
