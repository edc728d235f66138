"""A generated instance-segmentation dataset of coloured shapes, in COCO format.

Every image is drawn from its own seed, so a dataset is reproducible image by image. Shapes never
overlap (a new shape must keep a small gap to the ones already drawn), so each instance's polygon is
exactly its visible region. Pixels, ``area`` and ``bbox`` all come from the same rasterisation that
pycocotools uses for ``annToMask``, so annotations and images agree to the pixel.

Two styles, with disjoint classes and looks:

- ``"demo"``: circles, squares, triangles, stars, ellipses and crosses, shaded, on smooth colour
  fields. ``ensure_demo_dataset()`` builds the demo dataset (train / val / test) once under
  ``$DETECTRON2_DATASETS/politeteacher_demo`` and reuses it afterwards.
- ``"source"``: pentagons, hexagons, arrows, crescents, hearts, L- and T-shapes and trapezoids,
  striped and outlined, on striped or chequered textures. ``ensure_source_dataset()`` builds the
  fully labelled *source* set (``politeteacher_demo_source``) on which the demo model is
  pre-trained: the project's offline stand-in for ImageNet / COCO pre-training.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..errors import PoliteTeacherError
from ..io import write_json_atomic

logger = logging.getLogger(__name__)

# Category ids start at 1, as in COCO.
CATEGORIES: List[Dict] = [
    {"id": i + 1, "name": name, "supercategory": "shape"}
    for i, name in enumerate(["circle", "square", "triangle", "star", "ellipse", "cross"])
]
CLASS_NAMES: List[str] = [c["name"] for c in CATEGORIES]
SOURCE_CATEGORIES: List[Dict] = [
    {"id": i + 1, "name": name, "supercategory": "shape"}
    for i, name in enumerate(["pentagon", "hexagon", "arrow", "crescent", "heart", "ell", "tee", "trapezoid"])
]

DEMO_DIRNAME = "politeteacher_demo"
# (split, number of images, seed); bump DEMO_VERSION whenever the demo data would change.
DEMO_SPLITS: Tuple[Tuple[str, int, int], ...] = (("train", 200, 0), ("val", 50, 1), ("test", 4, 2))
DEMO_VERSION = 2
DEMO_IMAGE_SIZE = ((224, 288), (224, 320))  # (height range, width range)
SOURCE_DIRNAME = "politeteacher_demo_source"
SOURCE_SPLITS: Tuple[Tuple[str, int, int], ...] = (("train", 2000, 10), ("val", 100, 11))
SOURCE_VERSION = 1
_DONE_FILE = "DONE.json"

Size = Union[int, Tuple[int, int]]


def datasets_root() -> Path:
    """Where detectron2 looks for datasets: $DETECTRON2_DATASETS, default ./datasets."""
    return Path(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))


# ---------------------------------------------------------------------------------------------
# Shapes: each returns a polygon (N, 2) in pixel coordinates around the origin, "radius" r.


def _regular(n: int, r: float, phase: float) -> np.ndarray:
    t = phase + np.arange(n) * (2 * np.pi / n)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rotate(poly: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return poly @ np.array([[c, s], [-s, c]])


def _shape_polygon(name: str, r: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    if name == "circle":
        return _regular(48, r, 0.0)
    if name == "square":
        return _regular(4, r, angle)
    if name == "triangle":
        t = angle + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if name == "star":
        outer, inner = _regular(5, r, angle), _regular(5, 0.45 * r, angle + np.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(-1, 2)
    if name == "ellipse":
        t = np.arange(48) * (2 * np.pi / 48)
        b = r * rng.uniform(0.35, 0.6)
        return _rotate(np.stack([r * np.cos(t), b * np.sin(t)], axis=1), angle)
    if name == "cross":
        a = 0.35 * r  # half arm width
        q = np.array([[a, a], [a, r], [-a, r], [-a, a], [-r, a], [-r, -a],
                      [-a, -a], [-a, -r], [a, -r], [a, -a], [r, -a], [r, a]])
        return _rotate(q, angle)
    if name in ("pentagon", "hexagon"):
        return _regular(5 if name == "pentagon" else 6, r, angle)
    if name == "arrow":
        q = np.array([[-r, -0.2 * r], [0.2 * r, -0.2 * r], [0.2 * r, -0.6 * r], [r, 0.0],
                      [0.2 * r, 0.6 * r], [0.2 * r, 0.2 * r], [-r, 0.2 * r]])
        return _rotate(q, angle)
    if name == "crescent":
        # The disc of radius r minus the disc of radius r centred d to the right.
        d = r * rng.uniform(0.6, 1.0)
        phi = np.arctan2(np.sqrt(r * r - d * d / 4), d / 2)
        outer = np.linspace(phi, 2 * np.pi - phi, 40)  # upper tip, round the left, to the lower tip
        inner = np.linspace(np.pi + phi, np.pi - phi, 40)[1:-1]  # back inside, lower tip to upper tip
        q = np.concatenate([np.stack([r * np.cos(outer), r * np.sin(outer)], 1),
                            np.stack([d + r * np.cos(inner), r * np.sin(inner)], 1)])
        return _rotate(q - (d / 4, 0.0), angle)
    if name == "heart":
        t = np.arange(48) * (2 * np.pi / 48)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return _rotate(np.stack([x, y + 2.5], 1) * (r / 17), angle)
    if name == "ell":
        q = np.array([[-r, -r], [-0.2 * r, -r], [-0.2 * r, 0.4 * r], [r, 0.4 * r], [r, r], [-r, r]])
        return _rotate(q, angle)
    if name == "tee":
        q = np.array([[-r, -r], [r, -r], [r, -0.4 * r], [0.25 * r, -0.4 * r], [0.25 * r, r],
                      [-0.25 * r, r], [-0.25 * r, -0.4 * r], [-r, -0.4 * r]])
        return _rotate(q, angle)
    if name == "trapezoid":
        top = rng.uniform(0.3, 0.6)
        q = np.array([[-r, 0.6 * r], [r, 0.6 * r], [top * r, -0.6 * r], [-top * r, -0.6 * r]])
        return _rotate(q, angle)
    raise ValueError(f"unknown shape {name!r}")


def _rasterize(poly: np.ndarray, h: int, w: int) -> Dict:
    """Polygon -> compressed RLE, exactly as pycocotools' annToMask would rasterise it."""
    return mask_utils.merge(mask_utils.frPyObjects([poly.ravel().tolist()], h, w))


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square, one axis at a time (no scipy/cv2 needed)."""
    rows = mask.copy()
    for d in range(1, r + 1):
        rows[d:] |= mask[:-d]
        rows[:-d] |= mask[d:]
    out = rows.copy()
    for d in range(1, r + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out


# ---------------------------------------------------------------------------------------------
# Images


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour field + gradient + a few unannotated lines + pixel noise, float HWC."""
    grid = rng.uniform(40, 215, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
    g = rng.uniform(-40, 40, size=3).astype(np.float32)
    if rng.random() < 0.5:
        img += np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :, None] * g
    else:
        img += np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None, None] * g
    for _ in range(rng.integers(0, 5)):  # clutter that is not an object
        p0 = rng.uniform(0, 1, 2) * (w, h)
        p1 = rng.uniform(0, 1, 2) * (w, h)
        n = int(np.hypot(*(p1 - p0))) + 1
        pts = np.linspace(p0, p1, n).round().astype(int)
        pts[:, 0] = pts[:, 0].clip(0, w - 1)
        pts[:, 1] = pts[:, 1].clip(0, h - 1)
        img[pts[:, 1], pts[:, 0]] = rng.uniform(0, 255, 3)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(3, 12))
    return img


def _textured_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Two-colour stripes (random angle and period) or a chequerboard, plus pixel noise, float HWC."""
    c1, c2 = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        theta, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    else:
        cell = rng.uniform(8, 28)
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    img = c1 * t[..., None] + c2 * (1 - t[..., None])
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(3, 12))
    return img


def _paint_shaded(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """The demo style: one colour with a gradient across the shape and pixel noise."""
    colour = rng.uniform(0, 255, 3)
    shade = rng.uniform(-30, 30, 3)
    ys, xs = np.nonzero(mask)
    t = ((xs - xs.min()) / max(1, np.ptp(xs)))[:, None] - 0.5
    img[ys, xs] = colour + t * shade + 6 * rng.standard_normal((len(ys), 3), dtype=np.float32)


def _paint_outlined(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """The source style: flat or two-colour striped fill inside a 2-pixel outline."""
    colour = rng.uniform(0, 255, 3)
    ys, xs = np.nonzero(mask)
    fill = np.broadcast_to(colour, (len(ys), 3)).astype(np.float32)
    if rng.random() < 0.6:
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 10)
        on = np.sin(2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period) > 0
        fill = np.where(on[:, None], fill, rng.uniform(0, 255, 3).astype(np.float32))
    img[ys, xs] = fill + 6 * rng.standard_normal((len(ys), 3), dtype=np.float32)
    edge = mask & _dilate(~mask, 2)
    img[edge] = rng.choice([rng.uniform(0, 50), rng.uniform(205, 255)]) + rng.uniform(-15, 15, 3)


# style -> (categories, background, painter)
STYLES = {
    "demo": (CATEGORIES, _background, _paint_shaded),
    "source": (SOURCE_CATEGORIES, _textured_background, _paint_outlined),
}


def _pick_size(size: Size, rng: np.random.Generator) -> int:
    if isinstance(size, (int, np.integer)):
        return int(size)
    lo, hi = size
    return int(rng.integers(lo, hi + 1))


def render_image(
    seed: int,
    image_size: Union[int, Tuple[Size, Size]] = (256, 256),
    min_objects: int = 1,
    max_objects: int = 6,
    scale: Tuple[float, float] = (0.06, 0.22),
    gap: int = 2,
    attempts: int = 50,
    style: str = "demo",
) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image (RGB uint8 HWC) and its objects: dicts with category_id, segmentation
    (one polygon), area, bbox (XYWH of the mask pixels). Deterministic in ``seed``. ``style``
    ("demo" or "source", see the module doc) picks the classes and the look.

    ``image_size`` is an int (square) or (height, width), each an int or an inclusive (min, max)
    range. ``scale`` is the range of a shape's radius as a fraction of the image's shorter side.
    A shape that cannot be placed without touching another within ``attempts`` tries is dropped.
    """
    rng = np.random.default_rng(seed)
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    h, w = _pick_size(image_size[0], rng), _pick_size(image_size[1], rng)
    categories, background, paint = STYLES[style]
    img = background(h, w, rng)
    occupied = np.zeros((h, w), dtype=bool)
    objects: List[Dict] = []
    short = min(h, w)
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        for _ in range(attempts):
            cat = categories[rng.integers(len(categories))]
            r = rng.uniform(*scale) * short
            poly = _shape_polygon(cat["name"], r, rng.uniform(0, 2 * np.pi), rng)
            lo, hi = poly.min(0), poly.max(0)
            if np.any(hi - lo >= (w - 2, h - 2)):
                continue
            center = rng.uniform(1 - lo, (w - 1, h - 1) - hi)
            poly = np.round(poly + center, 2)
            rle = _rasterize(poly, h, w)
            mask = mask_utils.decode(rle).astype(bool)
            if not mask.any() or (_dilate(mask, gap) & occupied).any():
                continue
            occupied |= mask
            paint(img, mask, rng)
            objects.append({
                "category_id": cat["id"],
                "segmentation": [poly.ravel().tolist()],
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
            break
    return np.clip(img, 0, 255).round().astype(np.uint8), objects


def generate_dataset(
    out_dir: Union[str, os.PathLike],
    num_images: int,
    seed: int = 0,
    split: str = "train",
    image_size: Union[int, Tuple[Size, Size]] = (256, 256),
    min_objects: int = 1,
    max_objects: int = 6,
    scale: Tuple[float, float] = (0.06, 0.22),
    image_format: str = "jpg",
    style: str = "demo",
) -> Path:
    """Write ``num_images`` shape images to ``out_dir/<split>/`` and their COCO annotations to
    ``out_dir/annotations/instances_<split>.json``; return the JSON's path.

    Image ids are 1..num_images, annotation ids 1..; category ids 1..number of the style's
    classes. Image i is drawn from seed ``(seed, i)``, so the same arguments always give the same
    dataset. ``image_size`` is an int (square) or (height, width), each an int or an inclusive
    (min, max) range.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, not {style!r}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', not {image_format!r}")
    out = Path(out_dir)
    img_dir = out / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        pixels, objects = render_image(image_seed, image_size, min_objects, max_objects, scale, style=style)
        file_name = f"{i + 1:06d}.{image_format}"
        save_kw = {"quality": 95} if image_format == "jpg" else {}
        Image.fromarray(pixels).save(img_dir / file_name, **save_kw)
        image_id = i + 1
        images.append({"id": image_id, "file_name": file_name,
                       "height": pixels.shape[0], "width": pixels.shape[1]})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **obj})
    coco = {
        "info": {"description": f"politeteacher synthetic shapes ({style} style, {split}, seed {seed})",
                 "version": str(DEMO_VERSION if style == "demo" else SOURCE_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": STYLES[style][0],
    }
    json_path = out / "annotations" / f"instances_{split}.json"
    write_json_atomic(coco, json_path)
    return json_path


def _paths(folder: Path, splits) -> Dict[str, Tuple[Path, Path]]:
    return {s: (folder / "annotations" / f"instances_{s}.json", folder / s) for s, _, _ in splits}


def demo_paths(root: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Tuple[Path, Path]]:
    """split -> (annotation JSON, image folder) of the demo dataset under ``root``
    (the datasets root, default $DETECTRON2_DATASETS)."""
    return _paths(Path(root or datasets_root()) / DEMO_DIRNAME, DEMO_SPLITS)


def source_paths(root: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Tuple[Path, Path]]:
    """split -> (annotation JSON, image folder) of the source set under ``root``."""
    return _paths(Path(root or datasets_root()) / SOURCE_DIRNAME, SOURCE_SPLITS)


def _complete(folder: Path, version: int) -> bool:
    try:
        done = json.loads((folder / _DONE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return done.get("version") == version


def ensure_demo_dataset(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Return ``<root>/politeteacher_demo`` (root: the datasets root, default $DETECTRON2_DATASETS),
    generating it first when it is missing or from an older generator version."""
    return _ensure(root, DEMO_DIRNAME, DEMO_SPLITS, DEMO_VERSION, "demo")


def ensure_source_dataset(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Return ``<root>/politeteacher_demo_source``, the pre-training set, generating it first when
    it is missing or from an older generator version (a few minutes: 2100 images)."""
    return _ensure(root, SOURCE_DIRNAME, SOURCE_SPLITS, SOURCE_VERSION, "source")


def _ensure(root, dirname: str, splits, version: int, style: str) -> Path:
    """Build a generated dataset in a temporary folder next to its place and rename it there, so
    an interrupted run never leaves a half-written dataset and concurrent callers end up with one
    complete copy."""
    parent = Path(root) if root is not None else datasets_root()
    folder = parent / dirname
    if _complete(folder, version):
        return folder
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dirname}.tmp-"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is not
    except OSError as e:
        raise PoliteTeacherError(
            f"cannot create the {style} dataset under {parent} ({e.strerror}); "
            "set DETECTRON2_DATASETS to a writable folder"
        ) from e
    try:
        start = time.perf_counter()
        for split, n, seed in splits:
            generate_dataset(tmp, n, seed=seed, split=split, image_size=DEMO_IMAGE_SIZE, style=style)
        (tmp / _DONE_FILE).write_text(json.dumps({"version": version}))
        if folder.exists() and not _complete(folder, version):
            # Stale (older version or incomplete): move it aside, then drop it.
            stale = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dirname}.old-"))
            os.replace(folder, stale / dirname)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _complete(folder, version):  # not a concurrent winner: a real failure
                raise
        else:
            logger.info("Generated the %s dataset in %s (%.1f s)", style, folder, time.perf_counter() - start)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
