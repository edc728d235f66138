"""A tiny generated COCO-format dataset (with a crowd-only and an unannotated image) for data tests."""
import json
import shutil
from types import SimpleNamespace

import pytest

from politeteacher.config import get_politeteacher_cfg
from politeteacher.data.synthetic import generate_dataset

NUM_SHAPE_IMAGES = 20
CROWD_ONLY_ID, EMPTY_ID = 21, 22


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """20 shape images, image 21 (a crowd annotation only) and image 22 (no annotation):
    .json, .images (folder), .crowd_only_id, .empty_id, .num_annotated."""
    root = tmp_path_factory.mktemp("toy")
    json_path = generate_dataset(root, NUM_SHAPE_IMAGES, seed=3, image_size=(64, (56, 96)), max_objects=4)
    data = json.loads(json_path.read_text())
    first = data["images"][0]
    for image_id in (CROWD_ONLY_ID, EMPTY_ID):
        name = f"{image_id:06d}.jpg"
        shutil.copy(root / "train" / first["file_name"], root / "train" / name)
        data["images"].append({**first, "id": image_id, "file_name": name})
    data["annotations"].append({
        "id": 10_000, "image_id": CROWD_ONLY_ID, "category_id": 1, "iscrowd": 1,
        "bbox": [2.0, 2.0, 10.0, 10.0], "area": 100.0,
        "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]],
    })
    json_path.write_text(json.dumps(data))
    return SimpleNamespace(json=json_path, images=root / "train", crowd_only_id=CROWD_ONLY_ID,
                           empty_id=EMPTY_ID, num_annotated=NUM_SHAPE_IMAGES)


@pytest.fixture
def small_cfg():
    """Defaults with small images, one loader process, and the toy dataset as custom train set."""
    cfg = get_politeteacher_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 64)
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 2
    return cfg


@pytest.fixture
def toy_cfg(small_cfg, toy):
    small_cfg.DATASETS.CUSTOM.TRAIN_JSON = str(toy.json)
    small_cfg.DATASETS.CUSTOM.TRAIN_IMAGES = str(toy.images)
    return small_cfg
