"""The checks a training command makes before it starts: every image it will read, and masks."""
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from politeteacher.data.checks import setup_datasets
from politeteacher.data.mappers import TwoViewMapper, WeakMapper
from politeteacher.data.splits import labeled_and_unlabeled
from politeteacher.data.synthetic import generate_dataset
from politeteacher.errors import PoliteTeacherError

EXIF_ORIENTATION = 0x0112


def _rotated_by_exif(path: Path) -> None:
    """Re-save ``path`` with EXIF orientation 6: the stored pixels keep their size, detectron2
    reads the image turned by 90 degrees."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    with Image.open(path) as im:
        im.load()
    im.save(path, exif=exif)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])


@pytest.fixture
def bad_data(tmp_path):
    """8 training images (4 bad) and an unlabelled folder of 3 (1 bad). Image 5 is rotated by EXIF
    and its JSON gives the rotated size, as detectron2 reads it: a good image."""
    json_path = generate_dataset(tmp_path, 8, seed=5, image_size=(64, 80), max_objects=2)
    images = tmp_path / "train"
    data = json.loads(json_path.read_text())
    entry = {im["file_name"]: im for im in data["images"]}
    truncated, garbage, wrong_size, stored_size, rotated = (images / f"00000{i}.jpg" for i in (1, 2, 3, 4, 5))
    _truncate(truncated)
    garbage.write_bytes(bytes(range(256)) * 8)
    entry[wrong_size.name]["width"] += 10
    _rotated_by_exif(stored_size)  # its JSON keeps the stored 80 x 64
    _rotated_by_exif(rotated)
    entry[rotated.name]["width"], entry[rotated.name]["height"] = 64, 80
    json_path.write_text(json.dumps(data))

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (10 * i, 0, 0)).save(raw / f"raw{i}.jpg")
    raw_truncated = raw / "raw1.jpg"
    _truncate(raw_truncated)
    bad = {truncated: "truncated", garbage: "not an image", wrong_size: "says 90x64",
           stored_size: "is 64x80", raw_truncated: "truncated"}
    return json_path, images, raw, {str(p): why for p, why in bad.items()}


@pytest.fixture
def cfg(small_cfg, bad_data):
    json_path, images, raw, _ = bad_data
    small_cfg.DATASETS.CUSTOM.TRAIN_JSON = str(json_path)
    small_cfg.DATASETS.CUSTOM.TRAIN_IMAGES = str(images)
    small_cfg.DATASETS.UNLABELED_IMAGE_DIRS = [str(raw)]
    small_cfg.DATASETS.SPLIT.PERCENT = 50.0
    return small_cfg


def test_bad_images_stop_the_run_before_training_naming_each(cfg, bad_data):
    *_, bad = bad_data
    with pytest.raises(PoliteTeacherError) as e:
        setup_datasets(cfg)
    first, *listing = str(e.value).splitlines()
    assert first.startswith("5 of the 11 images cannot be used") and "--skip-bad-images" in first
    listed = {line.strip().split(": ")[0]: line for line in listing if line.startswith("    ")}
    assert set(listed) == set(bad)
    for path, why in bad.items():
        assert why in listed[path].lower(), listed[path]


def test_skip_bad_images_leaves_them_out_with_a_warning_each(cfg, bad_data, caplog):
    *_, bad = bad_data
    cfg.DATALOADER.SKIP_BAD_IMAGES = True
    with caplog.at_level(logging.WARNING):
        checked = setup_datasets(cfg)
    assert set(checked.DATALOADER.SKIPPED_IMAGES) == set(bad)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for path in bad:
        assert any(path in w for w in warnings), path
    assert "Skipped 5 of the 11 training and unlabelled images" in warnings[-1]

    # What the workers do with the checked config: the bad files are gone, the rest loads.
    labeled, unlabeled = labeled_and_unlabeled(checked)
    assert len(labeled) + len(unlabeled) == 6
    assert not {d["file_name"] for d in labeled + unlabeled} & set(bad)
    weak, two_views = WeakMapper(checked, is_train=True), TwoViewMapper(checked, is_train=True, labeled=False)
    for d in labeled:
        weak(d)
    for d in unlabeled:
        two_views(d)


def test_bad_validation_images_are_not_skipped(cfg, tmp_path):
    val_json = generate_dataset(tmp_path / "v", 2, seed=6, split="val", image_size=(64, 80), max_objects=2)
    truncated = tmp_path / "v" / "val" / "000002.jpg"
    _truncate(truncated)
    cfg.DATASETS.CUSTOM.VAL_JSON, cfg.DATASETS.CUSTOM.VAL_IMAGES = str(val_json), str(tmp_path / "v" / "val")
    cfg.DATALOADER.SKIP_BAD_IMAGES = True
    with pytest.raises(PoliteTeacherError, match="1 of the 2 validation images cannot be used") as e:
        setup_datasets(cfg)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and lines[1] == f"  custom_val ({val_json}):"
    assert lines[2].startswith(f"    {truncated}: cannot be decoded")



def _drop_masks(json_path: Path) -> str:
    """Remove the mask of every other annotation (so some images mix both kinds); "<removed> of
    the <all>"."""
    data = json.loads(json_path.read_text())
    for a in data["annotations"][::2]:
        del a["segmentation"]
    json_path.write_text(json.dumps(data))
    return f"{len(data['annotations'][::2])} of the {len(data['annotations'])}"


def test_annotations_without_masks_are_refused_unless_boxes_only(tmp_path):
    from politeteacher.config import resolve_config
    from politeteacher.modeling.build import build_centermask
    from tiny import TINY_MODEL

    train = generate_dataset(tmp_path, 4, seed=7, image_size=(64, 80), min_objects=2, max_objects=3)
    val = generate_dataset(tmp_path, 2, seed=8, split="val", image_size=(64, 80), min_objects=2, max_objects=3)
    dropped = _drop_masks(train)
    cfg = resolve_config("demo", overrides=[
        *TINY_MODEL, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "DATASETS.SPLIT.PERCENT", "50",
        "DATASETS.CUSTOM.TRAIN_JSON", str(train), "DATASETS.CUSTOM.TRAIN_IMAGES", str(tmp_path / "train"),
        "DATASETS.CUSTOM.VAL_JSON", str(val), "DATASETS.CUSTOM.VAL_IMAGES", str(tmp_path / "val"),
    ])
    with pytest.raises(PoliteTeacherError) as e:
        setup_datasets(cfg)
    assert str(e.value).startswith(f"{dropped} annotations of dataset custom_train ({train}) have no 'segmentation'")
    assert "--boxes-only (INPUT.BOXES_ONLY True) to train without the mask losses" in str(e.value)

    cfg.INPUT.BOXES_ONLY = True
    checked = setup_datasets(cfg)
    labeled, unlabeled = labeled_and_unlabeled(checked)
    batch = [WeakMapper(checked, is_train=True)(d) for d in labeled]
    assert all(len(b["instances"]) and not b["instances"].has("gt_masks") for b in batch)
    weak, _ = TwoViewMapper(checked, is_train=True, labeled=False)(unlabeled[0])
    assert "hidden_instances" not in weak  # pseudo-label statistics would need their masks
    model = build_centermask(checked)
    model.train()
    losses = model(batch)
    assert losses["loss_mask"].item() == 0 and losses["loss_maskiou"].item() == 0
    assert losses["loss_fcos_cls"].item() > 0

    _drop_masks(val)  # evaluating masks needs them whatever the training does
    with pytest.raises(PoliteTeacherError, match=rf"of dataset custom_val \({val}\) have no 'segmentation'.*mask AP"):
        setup_datasets(cfg)
