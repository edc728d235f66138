"""A tiny generated dataset and a tiny CenterMask config for training tests on 2 CPU cores."""
from types import SimpleNamespace

import pytest

from politeteacher.config import resolve_config
from politeteacher.data.synthetic import generate_dataset

from tiny import TINY_MODEL, TINY_TRAINING

TINY = [*TINY_MODEL, *TINY_TRAINING, "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "DATASETS.SPLIT.PERCENT", "100.0"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """6 training and 3 validation images of shapes, 128 x 160 (COCO format)."""
    root = tmp_path_factory.mktemp("tiny_data")
    train = generate_dataset(root, 6, seed=0, split="train", image_size=(128, 160), max_objects=3)
    val = generate_dataset(root, 3, seed=1, split="val", image_size=(128, 160), max_objects=3)
    return SimpleNamespace(root=root, train_json=train, train_images=root / "train",
                           val_json=val, val_images=root / "val")


def _tiny_cfg(data, output_dir, *overrides, val=True):
    opts = ["DATASETS.CUSTOM.TRAIN_JSON", str(data.train_json), "DATASETS.CUSTOM.TRAIN_IMAGES", str(data.train_images)]
    if val:
        opts += ["DATASETS.CUSTOM.VAL_JSON", str(data.val_json), "DATASETS.CUSTOM.VAL_IMAGES", str(data.val_images)]
    return resolve_config("demo", None, [*TINY, *opts, "OUTPUT_DIR", str(output_dir), *overrides])


@pytest.fixture
def tiny_cfg(tiny_data):
    """`tiny_cfg(output_dir, *KEY_VALUE_overrides, val=True)`: the tiny config on the tiny data,
    training into `output_dir`; `val=False` trains without a test set (no evaluation)."""
    return lambda output_dir, *overrides, val=True: _tiny_cfg(tiny_data, output_dir, *overrides, val=val)


@pytest.fixture
def train_args(tiny_data):
    """`train_args(output_dir, *overrides, val=False)`: the arguments of `politeteacher train-baseline`
    with the tiny config on the tiny data into `output_dir`, from the demo preset with SEED 7 (a
    config file: a top-level key is no command-line override)."""
    config = tiny_data.root / "demo_seed7.yaml"
    config.write_text("_BASE_: demo\nSEED: 7\n")

    def args(output_dir, *overrides, val=False):
        data = ["--train-json", tiny_data.train_json, "--train-images", tiny_data.train_images]
        if val:
            data += ["--val-json", tiny_data.val_json, "--val-images", tiny_data.val_images]
        options = [*TINY_MODEL, *TINY_TRAINING, "DATASETS.SPLIT.PERCENT", "100.0"]
        return [str(a) for a in ("train-baseline", "--config-file", config, *data, "--output-dir", output_dir,
                                 "--weights", "none", "--device", "cpu", *options, *overrides)]

    return args
