"""What predict reads: image files (decoded in a loader worker while the model runs), video files and
cameras (frames read with OpenCV)."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.data import detection_utils

from ..errors import PoliteTeacherError
from ..io import IMAGE_EXTENSIONS

# Files OpenCV's FFmpeg back-end reads as video; a folder's or a pattern's other files are not looked at.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def collect_images(items: Sequence[str]) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Expand files, folders (their image and video files, not recursive) and glob patterns into a list
    of files, in the given order without duplicates. Returns (files, [(item, why it gave nothing)]).
    Explicitly named files are kept whatever their extension (reading them decides)."""
    files: List[Path] = []
    problems: List[Tuple[str, str]] = []
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS

    def media_in(paths):
        return [p for p in paths if p.is_file() and p.suffix.lower() in known]

    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = media_in(sorted(p.iterdir()))
            if not found:
                problems.append((item, f"folder has no images ({', '.join(IMAGE_EXTENSIONS)}) or videos"))
            files += found
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(item):
            found = media_in(sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=True)))
            if not found:
                problems.append((item, "pattern matches no image"))
            files += found
        else:
            problems.append((item, "not found"))
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


class ImageFiles(torch.utils.data.Dataset):
    """Image files as the model's inputs (`model.InputMaker`), read in cfg.INPUT.FORMAT; with
    `keep_original`, the decoded image too (as a uint8 tensor, which crosses from a worker through
    shared memory). A file that cannot be read gives {"error": why} instead of failing the loader."""

    def __init__(self, files: Sequence[Path], make_input, input_format: str, keep_original: bool):
        self.files, self.make_input, self.format, self.keep = list(files), make_input, input_format, keep_original

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        path = self.files[i]
        try:
            image = detection_utils.read_image(str(path), format=self.format)
        except Exception as e:  # PIL raises several types for a file that is not an image
            return {"index": i, "path": path, "error": f"not a readable image ({type(e).__name__})"}
        item = {"index": i, "path": path, "error": None, **self.make_input(image)}
        if self.keep:
            item["original"] = torch.from_numpy(np.ascontiguousarray(image))
        return item


def collect_inputs(items: Sequence[str], task: str) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """`collect_images`, refusing `items` that give no file: "no images to <task> (why each gave none)"."""
    files, skipped = collect_images(items)
    if not files:
        why = "; ".join(f"{p}: {r}" for p, r in skipped) or "no inputs"
        raise PoliteTeacherError(f"no images to {task} ({why}); pass image files, folders or globs")
    return files, skipped


def image_batches(files: Sequence[Path], make_input, input_format: str, batch_size: int, workers: int,
                  keep_original: bool) -> Iterator[List[Dict[str, Any]]]:
    """Batches of `ImageFiles` items in file order; `workers` processes decode and resize the next
    batches while the model runs on this one (0: in this process)."""
    dataset = ImageFiles(files, make_input, input_format, keep_original)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=list,
        prefetch_factor=2 if workers else None,
    )
    yield from loader


def open_video(source, name: str):
    """An opened cv2.VideoCapture of a file or a camera index; a one-line error when it does not open."""
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        if isinstance(source, int):
            raise PoliteTeacherError(f"cannot open webcam {source}; pass the index of a connected camera (0, 1, ...)")
        raise PoliteTeacherError(f"cannot read video {name}; pass a file OpenCV reads (mp4, avi, mkv, ...)")
    return capture


def video_frames(capture, input_format: str, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """The frames of an opened capture (BGR from OpenCV) in cfg.INPUT.FORMAT, at most `limit`."""
    n = 0
    while limit is None or n < limit:
        ok, frame = capture.read()
        if not ok:
            return
        n += 1
        yield frame if input_format == "BGR" else np.ascontiguousarray(frame[:, :, ::-1])
