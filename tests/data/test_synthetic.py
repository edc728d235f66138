import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from politeteacher.data import synthetic
from politeteacher.data.synthetic import (
    CATEGORIES,
    SOURCE_CATEGORIES,
    ensure_demo_dataset,
    ensure_source_dataset,
    generate_dataset,
)


@pytest.fixture(scope="module", params=["demo", "source"])
def generated(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    return root, generate_dataset(root, 12, seed=5, image_size=((60, 80), (70, 100)), max_objects=6, style=request.param)


def test_generated_dataset_is_valid_coco(generated):
    root, json_path = generated
    coco = COCO(str(json_path))
    categories = CATEGORIES if "demo style" in coco.dataset["info"]["description"] else SOURCE_CATEGORIES
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [c["name"] for c in categories]
    assert sorted(coco.getCatIds()) == list(range(1, len(categories) + 1)) and len(categories) >= 5
    assert len(coco.imgs) == 12 and len(coco.anns) >= 12
    used = set()
    for image in coco.imgs.values():
        with Image.open(root / "train" / image["file_name"]) as im:
            assert im.size == (image["width"], image["height"])
        assert 60 <= image["height"] <= 80 and 70 <= image["width"] <= 100
        union = np.zeros((image["height"], image["width"]), dtype=int)
        for ann in coco.imgToAnns[image["id"]]:
            used.add(ann["category_id"])
            assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"], list)
            assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])
            mask = coco.annToMask(ann)
            assert mask.sum() > 0
            assert abs(mask.sum() - ann["area"]) <= 0.01 * ann["area"]
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert x <= xs.min() and xs.max() + 1 <= x + w + 1e-6
            assert y <= ys.min() and ys.max() + 1 <= y + h + 1e-6
            union += mask
        assert union.max() <= 1  # no occlusion: each polygon is exactly the visible region
    assert len(used) >= 4


def test_source_classes_are_disjoint_from_the_demo_classes():
    # The source set stands in for pre-training on other data: no class of the demo may be in it.
    assert not {c["name"] for c in CATEGORIES} & {c["name"] for c in SOURCE_CATEGORIES}
    assert len(SOURCE_CATEGORIES) == 8


def test_source_dataset_is_made_once_beside_the_demo(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "SOURCE_SPLITS", (("train", 3, 10), ("val", 2, 11)))
    source = ensure_source_dataset(tmp_path)
    assert source == tmp_path / "politeteacher_demo_source"
    data = json.loads((source / "annotations" / "instances_train.json").read_text())
    assert len(data["images"]) == 3 and [c["name"] for c in data["categories"]][0] == "pentagon"
    assert ensure_source_dataset(tmp_path) == source and [p.name for p in tmp_path.iterdir()] == [source.name]


def test_objects_are_painted_where_their_masks_are(tmp_path):
    # Inside a mask (away from JPEG-blurred edges) the pixels are one colour, unlike around it.
    root = tmp_path
    json_path = generate_dataset(root, 12, seed=5, image_size=((60, 80), (70, 100)), max_objects=6)
    coco = COCO(str(json_path))
    ann = max(coco.anns.values(), key=lambda a: a["area"])
    image = coco.imgs[ann["image_id"]]
    pixels = np.asarray(Image.open(root / "train" / image["file_name"]), dtype=float)
    mask = coco.annToMask(ann).astype(bool)
    inside, ring = pixels[mask & ~_grow(~mask)], pixels[_grow(mask) & ~mask]
    assert inside.std(0).max() < 20  # one colour, plus shading and noise
    assert np.abs(ring.mean(0) - inside.mean(0)).max() > 3 or ring.std(0).max() > 20


def _grow(mask, r=2):
    grown = mask.copy()
    for axis in (0, 1):
        for shift in range(-r, r + 1):
            grown |= np.roll(mask, shift, axis=axis)
    return grown


def test_generation_is_deterministic_by_seed(tmp_path):
    a = generate_dataset(tmp_path / "a", 4, seed=1, image_size=64, image_format="png")
    b = generate_dataset(tmp_path / "b", 4, seed=1, image_size=64, image_format="png")
    c = generate_dataset(tmp_path / "c", 4, seed=2, image_size=64, image_format="png")
    assert a.read_text() == b.read_text()
    assert (tmp_path / "a/train/000003.png").read_bytes() == (tmp_path / "b/train/000003.png").read_bytes()
    assert json.loads(a.read_text())["annotations"] != json.loads(c.read_text())["annotations"]


def test_demo_dataset_is_made_once_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEMO_SPLITS", (("train", 3, 0), ("val", 2, 1), ("test", 1, 2)))
    demo = ensure_demo_dataset(tmp_path)
    assert demo == tmp_path / "politeteacher_demo"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        data = json.loads((demo / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == n == len(list((demo / split).glob("*.jpg")))
    assert [p.name for p in tmp_path.iterdir()] == ["politeteacher_demo"]  # no temporary left

    def fail(*args, **kwargs):
        raise AssertionError("regenerated an existing demo dataset")

    monkeypatch.setattr(synthetic, "generate_dataset", fail)
    assert ensure_demo_dataset(tmp_path) == demo


def test_incomplete_demo_dataset_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEMO_SPLITS", (("train", 2, 0), ("val", 1, 1), ("test", 1, 2)))
    partial = tmp_path / "politeteacher_demo" / "train"
    partial.mkdir(parents=True)
    (partial / "junk.jpg").write_bytes(b"")
    demo = ensure_demo_dataset(tmp_path)
    assert not (demo / "train" / "junk.jpg").exists()
    assert (demo / "annotations" / "instances_val.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["politeteacher_demo"]


def test_demo_dataset_defaults_to_detectron2_datasets(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEMO_SPLITS", (("train", 1, 0), ("val", 1, 1), ("test", 1, 2)))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    assert ensure_demo_dataset() == tmp_path / "d2" / "politeteacher_demo"
