"""Shared helpers for the model tests: a small CenterMask config and a tiny generated shapes set."""
from __future__ import annotations

import numpy as np
import torch

from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.structures.masks import polygons_to_bitmask

import politeteacher.modeling  # noqa: F401  (registers the components)
from politeteacher.config import resolve_config


# The model tests' own small CenterMask: R-18 + GN from the demo preset, with CenterMask's 4-conv heads
# at 128 channels, pinned here so that the demo preset can change without changing these tests.
SMALL_MODEL = [
    "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.FPN.OUT_CHANNELS", "128", "MODEL.FCOS.NUM_CLS_CONVS", "4", "MODEL.FCOS.NUM_BOX_CONVS", "4",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "512",
    "MODEL.ROI_MASK_HEAD.NUM_CONV", "4", "MODEL.ROI_MASK_HEAD.CONV_DIM", "128",
    "MODEL.ROI_MASKIOU_HEAD.NUM_CONV", "4", "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", "128",
    "MODEL.ROI_MASKIOU_HEAD.FC_DIM", "256",
]


def small_cfg(num_classes: int = 2, extra=()):
    """A small CenterMask (R-18, GN, 128 channels, 4-conv heads) on CPU with ``num_classes`` classes."""
    return resolve_config(
        preset="demo",
        overrides=[
            *SMALL_MODEL,
            "MODEL.FCOS.NUM_CLASSES", str(num_classes),
            "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes),
            "MODEL.DEVICE", "cpu",
            *extra,
        ],
    )


def build_small_model(num_classes: int = 2, extra=(), seed: int = 0):
    torch.manual_seed(seed)
    return build_model(small_cfg(num_classes, extra))


def rect_poly(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def circle_poly(cx, cy, r, n=32):
    t = np.linspace(0, 2 * np.pi, n + 1)[:-1]
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).reshape(-1).astype(float).tolist()


def make_shapes(num_images: int = 3, size: int = 128, seed: int = 0, max_shapes: int = 3):
    """Images of filled rectangles (class 0) and circles (class 1) on a plain background.

    Returns a list of {"image": HxWx3 uint8 BGR, "annos": [{"cls", "poly", "bbox" XYXY}], "id"}.
    """
    rng = np.random.RandomState(seed)
    data = []
    for i in range(num_images):
        img = np.ones((size, size, 3), np.uint8) * rng.randint(0, 100, size=3).astype(np.uint8)
        annos, placed, tries = [], [], 0
        while len(annos) < max_shapes and tries < 200:
            tries += 1
            cls = int(rng.randint(2))
            s = int(rng.randint(28, 56))
            x0, y0 = (int(v) for v in rng.randint(4, size - s - 4, size=2))
            box = (x0, y0, x0 + s, y0 + s)
            if any(
                not (box[2] + 4 <= b[0] or b[2] + 4 <= box[0] or box[3] + 4 <= b[1] or b[3] + 4 <= box[1])
                for b in placed
            ):
                continue
            placed.append(box)
            if cls == 0:
                poly = rect_poly(x0, y0, x0 + s, y0 + int(rng.randint(s // 2, s + 1)))
            else:
                poly = circle_poly(x0 + s / 2, y0 + s / 2, s / 2)
            mask = polygons_to_bitmask([np.array(poly)], size, size)
            img[mask] = rng.randint(150, 256, size=3).astype(np.uint8)
            p = np.array(poly).reshape(-1, 2)
            bbox = [float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]
            annos.append({"cls": cls, "poly": poly, "bbox": bbox})
        data.append({"image": img, "annos": annos, "id": i + 1})
    return data


def to_model_input(record, mask_format: str = "polygon"):
    """A detectron2 model input dict (image CHW float BGR + gt Instances) for a generated record."""
    image = torch.as_tensor(np.ascontiguousarray(record["image"])).permute(2, 0, 1).float()
    h, w = image.shape[1:]
    inst = Instances((h, w))
    annos = record["annos"]
    inst.gt_boxes = Boxes(torch.tensor([a["bbox"] for a in annos], dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor([a["cls"] for a in annos], dtype=torch.int64)
    if mask_format == "polygon":
        inst.gt_masks = PolygonMasks([[a["poly"]] for a in annos])
    else:
        masks = [polygons_to_bitmask([np.array(a["poly"])], h, w) for a in annos]
        inst.gt_masks = BitMasks(
            torch.as_tensor(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.bool)
        )
    return {"image": image, "instances": inst, "height": h, "width": w, "image_id": record["id"]}


def empty_input(h: int = 128, w: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.zeros(0, 4))
    inst.gt_classes = torch.zeros(0, dtype=torch.int64)
    image = torch.randint(0, 255, (3, h, w), generator=g).float()
    return {"image": image, "instances": inst, "height": h, "width": w, "image_id": 0}

