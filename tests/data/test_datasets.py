import json
import shutil
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from politeteacher.data import synthetic
from politeteacher.data.datasets import (
    apply_dataset_classes,
    dataset_presence,
    get_dataset_dicts,
    load_image_folder,
    register_all,
    resolve_dataset,
)
from politeteacher.data.synthetic import CLASS_NAMES
from politeteacher.errors import PoliteTeacherError
from tiny import COCO_TINY, needs_coco_tiny


def test_custom_dataset_registers_and_classes_follow_categories(toy_cfg, toy):
    cfg = register_all(toy_cfg)
    assert cfg.DATASETS.TRAIN == ("custom_train",) and cfg.DATASETS.TEST == ()
    dicts = DatasetCatalog.get("custom_train")
    assert len(dicts) == 22 and any(d["image_id"] == toy.empty_id and d["annotations"] == [] for d in dicts)
    cfg = apply_dataset_classes(cfg)
    assert cfg.MODEL.FCOS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(CLASS_NAMES)
    assert list(cfg.DATASETS.CLASS_NAMES) == CLASS_NAMES
    assert toy_cfg.DATASETS.TRAIN != cfg.DATASETS.TRAIN  # the caller's config is left alone


def test_custom_category_ids_are_kept_through_the_id_map(toy_cfg, tmp_path):
    data = json.loads(Path(toy_cfg.DATASETS.CUSTOM.TRAIN_JSON).read_text())
    new_ids = {c["id"]: 10 * c["id"] + 3 for c in data["categories"]}
    for c in data["categories"]:
        c["id"] = new_ids[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = new_ids[a["category_id"]]
    (tmp_path / "renumbered.json").write_text(json.dumps(data))
    toy_cfg.DATASETS.CUSTOM.TRAIN_JSON = str(tmp_path / "renumbered.json")
    cfg = apply_dataset_classes(register_all(toy_cfg))
    meta = MetadataCatalog.get("custom_train")
    assert meta.thing_dataset_id_to_contiguous_id == {13: 0, 23: 1, 33: 2, 43: 3, 53: 4, 63: 5}
    assert cfg.MODEL.FCOS.NUM_CLASSES == 6
    classes = {a["category_id"] for d in DatasetCatalog.get("custom_train") for a in d["annotations"]}
    assert classes <= set(range(6))


def test_custom_val_becomes_the_test_set_and_must_share_classes(toy_cfg, tmp_path):
    toy_cfg.DATASETS.CUSTOM.VAL_JSON = toy_cfg.DATASETS.CUSTOM.TRAIN_JSON
    toy_cfg.DATASETS.CUSTOM.VAL_IMAGES = toy_cfg.DATASETS.CUSTOM.TRAIN_IMAGES
    cfg = apply_dataset_classes(register_all(toy_cfg))
    assert cfg.DATASETS.TEST == ("custom_val",)

    data = json.loads(Path(toy_cfg.DATASETS.CUSTOM.TRAIN_JSON).read_text())
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 2]
    (tmp_path / "two.json").write_text(json.dumps(data))
    toy_cfg.DATASETS.CUSTOM.VAL_JSON = str(tmp_path / "two.json")
    with pytest.raises(PoliteTeacherError, match="custom_val.*share their categories"):
        apply_dataset_classes(register_all(toy_cfg))


@pytest.mark.parametrize("key", ["TRAIN_JSON", "TRAIN_IMAGES"])
def test_missing_custom_path_names_it(toy_cfg, tmp_path, key):
    toy_cfg.DATASETS.CUSTOM[key] = str(tmp_path / "nowhere")
    with pytest.raises(PoliteTeacherError, match=f"{tmp_path / 'nowhere'} not found") as e:
        register_all(toy_cfg)
    assert "\n" not in str(e.value)


def test_half_a_custom_set_is_an_error(small_cfg, toy):
    small_cfg.DATASETS.CUSTOM.TRAIN_JSON = str(toy.json)
    with pytest.raises(PoliteTeacherError, match="DATASETS.CUSTOM.TRAIN_IMAGES is not set"):
        register_all(small_cfg)


@pytest.mark.parametrize("content", ['{"images": [', '[1, 2]', '{"images": [], "categories": []}'])
def test_broken_custom_json_names_the_file(toy_cfg, tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    toy_cfg.DATASETS.CUSTOM.TRAIN_JSON = str(bad)
    with pytest.raises(PoliteTeacherError, match=str(bad)) as e:
        register_all(toy_cfg)
    assert "\n" not in str(e.value)


def _coco_layout(root: Path, toy, split="val2017") -> Path:
    ann = root / "coco" / "annotations" / f"instances_{split}.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(toy.images, root / "coco" / split)
    shutil.copy(toy.json, ann)
    return ann


def test_coco_names_resolve_under_detectron2_datasets_at_call_time(small_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "first"))
    small_cfg.DATASETS.TRAIN, small_cfg.DATASETS.TEST = ("coco_2017_train",), ("coco_2017_val",)
    with pytest.raises(PoliteTeacherError) as e:
        register_all(small_cfg)
    msg = str(e.value)
    assert str(tmp_path / "first" / "coco" / "annotations" / "instances_train2017.json") in msg
    assert "DETECTRON2_DATASETS" in msg and "\n" not in msg
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "second"))
    resolve_dataset("coco_2017_val", validate=False)
    assert MetadataCatalog.get("coco_2017_val").json_file == str(
        tmp_path / "second" / "coco" / "annotations" / "instances_val2017.json"
    )


def test_detectron2s_import_time_registration_is_replaced(tmp_path, monkeypatch, toy):
    # detectron2 registered coco_2017_val at import with the same root: loading must still give
    # one-line errors, not detectron2's FileNotFoundError traceback.
    from detectron2.data.datasets import register_coco_instances

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    ann = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    DatasetCatalog.pop("coco_2017_val", None)
    MetadataCatalog.pop("coco_2017_val", None)
    register_coco_instances("coco_2017_val", {}, str(ann), str(tmp_path / "coco" / "val2017"))
    with pytest.raises(PoliteTeacherError, match=f"{ann} not found"):
        get_dataset_dicts("coco_2017_val")
    _coco_layout(tmp_path, toy)
    ann.write_text("[]")
    with pytest.raises(PoliteTeacherError, match=f"{ann} is not a COCO instances file"):
        get_dataset_dicts("coco_2017_val")


def test_broken_coco_json_names_the_file_when_loaded(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    ann = _coco_layout(tmp_path, toy)
    ann.write_text('{"images": [')
    resolve_dataset("coco_2017_val")  # the files exist
    with pytest.raises(PoliteTeacherError, match=f"{ann} is not valid JSON"):
        DatasetCatalog.get("coco_2017_val")


def test_wrong_image_folder_is_reported(toy_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    toy_cfg.DATASETS.CUSTOM.TRAIN_IMAGES = str(tmp_path / "empty")
    register_all(toy_cfg)
    with pytest.raises(PoliteTeacherError, match="000001.jpg .*not found.*" + str(tmp_path / "empty")):
        DatasetCatalog.get("custom_train")


def test_unknown_dataset_name(small_cfg):
    small_cfg.DATASETS.TRAIN = ("no_such_set",)
    with pytest.raises(PoliteTeacherError, match="unknown dataset 'no_such_set'"):
        register_all(small_cfg)


def test_missing_unlabeled_image_dir(toy_cfg, tmp_path):
    toy_cfg.DATASETS.UNLABELED_IMAGE_DIRS = [str(tmp_path / "raw")]
    with pytest.raises(PoliteTeacherError, match=str(tmp_path / "raw")):
        register_all(toy_cfg)


def test_demo_names_generate_the_demo_dataset(small_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setattr(synthetic, "DEMO_SPLITS", (("train", 3, 0), ("val", 2, 1), ("test", 1, 2)))
    small_cfg.DATASETS.TRAIN, small_cfg.DATASETS.TEST = ("demo_train",), ("demo_val",)
    cfg = apply_dataset_classes(register_all(small_cfg))
    assert len(DatasetCatalog.get("demo_train")) == 3 and len(DatasetCatalog.get("demo_val")) == 2
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(CLASS_NAMES)
    assert (tmp_path / "politeteacher_demo" / "test").is_dir()


def test_dataset_presence(tmp_path, toy):
    _coco_layout(tmp_path, toy, "val2017")
    presence = dataset_presence(tmp_path)
    assert presence["coco_2017_val"][1] is True and presence["coco_2017_train"][1] is False
    assert str(tmp_path / "coco" / "annotations" / "instances_train2017.json") in presence["coco_2017_train"][0]


def test_load_image_folder(tmp_path):
    folder = tmp_path / "raw"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(folder / "b.jpg")
    Image.new("RGB", (20, 10)).save(folder / "sub" / "a.PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: detectron2 reads it as 30 wide, 50 high
    Image.new("RGB", (50, 30)).save(folder / "c.jpg", exif=exif)
    Image.new("RGB", (5, 5)).save(folder / ".hidden.jpg")
    (folder / "notes.txt").write_text("not an image")
    dicts = load_image_folder(folder)
    sizes = {Path(d["file_name"]).name: (d["width"], d["height"]) for d in dicts}
    assert sizes == {"b.jpg": (40, 30), "a.PNG": (20, 10), "c.jpg": (30, 50)}
    ids = [d["image_id"] for d in dicts]
    assert len(set(ids)) == 3 and all(isinstance(i, str) for i in ids)
    assert all("annotations" not in d for d in dicts)


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(PoliteTeacherError, match=str(tmp_path / "missing")):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoliteTeacherError, match="no images in"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PoliteTeacherError, match="x.jpg is not a readable image"):
        load_image_folder(tmp_path / "bad")


@pytest.mark.coco
@needs_coco_tiny
def test_coco_tiny_keeps_coco_ids_and_80_classes(small_cfg, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(COCO_TINY))
    small_cfg.DATASETS.TRAIN, small_cfg.DATASETS.TEST = ("coco_2017_train",), ("coco_2017_val",)
    cfg = apply_dataset_classes(register_all(small_cfg))
    assert cfg.MODEL.FCOS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    dicts = get_dataset_dicts("coco_2017_val")
    assert len(dicts) == 80
    id_map = MetadataCatalog.get("coco_2017_val").thing_dataset_id_to_contiguous_id
    assert id_map[1] == 0 and id_map[90] == 79
    assert dataset_presence()["coco_2017_train"][1] is True
