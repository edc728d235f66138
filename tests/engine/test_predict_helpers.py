"""Pieces of `politeteacher.predict`: input expansion, overlays, class ids."""
import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from politeteacher.config import resolve_config
from politeteacher.predict import class_metadata, collect_images, render_overlay


def test_collect_images_files_folders_globs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.jpg", "a/2.PNG", "a/notes.txt", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    files, problems = collect_images([
        str(tmp_path / "a"), str(tmp_path / "b.jpg"), str(tmp_path / "a" / "1.jpg"),  # duplicate
        str(tmp_path / "*.jpg"), str(tmp_path / "a" / "notes.txt"), str(tmp_path / "missing.jpg"),
        str(tmp_path / "*.gif"),
    ])
    assert [p.name for p in files] == ["1.jpg", "2.PNG", "b.jpg", "notes.txt"]
    assert problems == [(str(tmp_path / "missing.jpg"), "not found"),
                        (str(tmp_path / "*.gif"), "pattern matches no image")]


def test_overlay_draws_masks_and_boxes():
    img = np.full((60, 80, 3), 200, np.uint8)
    inst = Instances((60, 80))
    inst.pred_boxes = Boxes(torch.tensor([[5.0, 20.0, 40.0, 50.0]]))
    inst.scores = torch.tensor([0.9])
    inst.pred_classes = torch.tensor([1])
    masks = torch.zeros(1, 60, 80, dtype=torch.bool)
    masks[0, 30:45, 10:35] = True
    inst.pred_masks = masks
    out = render_overlay(img, inst, ["a", "b"])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[35, 20] != 200).any()  # inside the mask: blended with the class colour
    assert (out[55, 70] == 200).all()  # far from everything: untouched
    assert (render_overlay(img, inst[:0], ["a", "b"]) == img).all()  # no detections: the image


def test_class_metadata_maps_back_to_coco_ids():
    cfg = resolve_config("baseline_sup10")  # COCO built-in names, 80 classes; no files needed
    names, to_id = class_metadata(cfg)
    assert names[0] == "person" and len(names) == 80
    assert to_id[0] == 1 and to_id[79] == 90
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    cfg.DATASETS.CLASS_NAMES = ["x", "y", "z"]
    cfg.DATASETS.TRAIN = ("custom_train",)
    cfg.DATASETS.CUSTOM.TRAIN_JSON = "/nonexistent.json"
    cfg.DATASETS.CUSTOM.TRAIN_IMAGES = "/nonexistent"
    assert class_metadata(cfg) == (["x", "y", "z"], {0: 0, 1: 1, 2: 2})
