"""Files the package writes and reads: atomic writes, JSON, output folders, a full disk, image names.

Every file is written to `name.tmp` beside its target, fsynced and renamed over the target, so a reader
(or a run killed halfway) sees the old complete file or the new complete one, never a partial one; a
write that fails removes its temporary file (`run_dir` removes those of a killed run on --resume).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, List, Mapping, Optional, Sequence, Tuple

from .errors import PoliteTeacherError

# What counts as an image in a folder (data folders, predict's inputs, doctor).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

WriteFn = Callable[[IO[bytes]], Any]


def no_space(exc: Optional[BaseException]) -> Optional[OSError]:
    """The full-disk (or quota) error behind `exc`, if any: `exc` itself, or the exception it was
    raised from or during (torch.save reports a failed write as a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class NoSpaceError(PoliteTeacherError):
    """A write failed because the disk (or the user's quota) is full."""

    def __init__(self, path: os.PathLike | str):
        path = Path(path)
        folder = next((p for p in (path, *path.parents) if p.is_dir()), Path.cwd())
        free = shutil.disk_usage(folder).free / 2**20
        super().__init__(
            f"no space left on the disk of {path} ({free:.0f} MiB free) while writing it; free some space "
            "and run again (files written before, checkpoints included, are intact; --resume continues training)"
        )


@contextlib.contextmanager
def reporting_full_disk(path: os.PathLike | str):
    """Turn a full disk while writing `path` into a NoSpaceError that names it."""
    try:
        yield
    except BaseException as e:
        if no_space(e) is not None:
            raise NoSpaceError(path) from e
        raise


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (where the platform has directory file descriptors)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temporary(target: Path, write_fn: WriteFn) -> Path:
    """`target.tmp` filled by `write_fn(binary file)` and fsynced; removed again when that fails."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        # open() creates it with 0o666 less the umask, as for any file the user makes.
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(target: os.PathLike | str, write_fn: WriteFn) -> Path:
    """Call `write_fn(binary file)` on `target.tmp`, fsync it, and rename it over `target`.

    When `write_fn` raises, the temporary file is removed and the old file is untouched (a full disk
    is a NoSpaceError naming `target`).
    """
    target = Path(target)
    with reporting_full_disk(target):
        tmp = _write_temporary(target, write_fn)
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(target: os.PathLike | str, text: str) -> Path:
    return atomic_write(target, lambda f: f.write(text.encode("utf-8")))


def write_files_atomic(files: Sequence[Tuple[os.PathLike | str, WriteFn]]) -> None:
    """Write several files, all or none: each `(path, write_fn)` goes to a temporary file beside its
    target (missing folders are made), and the targets are replaced only once every one is written.
    A place that cannot be written is a one-line PoliteTeacherError, and then no target has changed
    and no folder was left behind."""
    done: List[Tuple[Path, Path]] = []
    created: List[Path] = []
    try:
        for path, write_fn in files:
            path = Path(path)
            current = Path(os.path.abspath(path.parent))
            try:
                missing = [p for p in (current, *current.parents) if not p.exists()]
                for folder in reversed(missing):
                    folder.mkdir()
                    created.append(folder)
                done.append((_write_temporary(path, write_fn), path))
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
    for folder in {path.parent for _, path in done}:
        _fsync_dir(folder)


def write_jsons_atomic(files: Sequence[Tuple[Any, os.PathLike | str, Mapping[str, Any]]]) -> None:
    """:func:`write_files_atomic` for JSON: each `(obj, path, json.dump keywords)`."""
    write_files_atomic([(path, lambda f, o=obj, kw=dump_kw: f.write(json.dumps(o, **kw).encode("utf-8")))
                        for obj, path, dump_kw in files])


def write_json_atomic(obj, path: os.PathLike | str, **dump_kw) -> None:
    """Write `obj` as JSON to a temporary file beside `path`, then rename it into place."""
    write_jsons_atomic([(obj, path, dump_kw)])


def invalid_json(path, e: json.JSONDecodeError, expected: str) -> PoliteTeacherError:
    return PoliteTeacherError(
        f"{path} is not valid JSON (line {e.lineno}, column {e.colno}): expected {expected}"
    )


def read_json(path: os.PathLike | str, expected: str):
    """The parsed file; a one-line PoliteTeacherError naming it when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise PoliteTeacherError(f"{path} not found: expected {expected}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise invalid_json(path, e, expected) from e


def writable_folder(folder: os.PathLike | str, option: str) -> Path:
    """`folder`, created (with its parents) when missing, once a file could be made in it; else a
    PoliteTeacherError naming it and `option`, the flag that picks another one. Output folders are
    checked up front so that one the user cannot write to is one clear error line, not a traceback
    halfway through the work."""
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


__all__ = [
    "IMAGE_EXTENSIONS",
    "NoSpaceError",
    "atomic_write",
    "atomic_write_text",
    "invalid_json",
    "no_space",
    "read_json",
    "reporting_full_disk",
    "writable_folder",
    "write_files_atomic",
    "write_json_atomic",
    "write_jsons_atomic",
]
