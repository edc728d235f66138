"""Starting weights are checked on the launching process: a .pkl must be a model-zoo pickle."""
import pickle

import numpy as np
import pytest

from politeteacher.engine.checkpoint import resolve_weights
from politeteacher.errors import PoliteTeacherError

W = np.zeros((2, 3), dtype=np.float32)
MODEL_ZOO = {  # what detectron2's checkpointer loads from a .pkl
    "detectron2": {"model": {"backbone.conv.weight": W}, "__author__": "someone"},
    "caffe2_detection": {"blobs": {"conv1_w": W, "conv1_w_momentum": W}, "cfg": "text"},
    "imagenet": {"conv1_w": W, "res2_0_branch1_w": W},
}
NOT_MODEL_ZOO = [
    (b"\x00not a pickle at all" * 10, "UnpicklingError"),
    (b"", "EOFError"),
    (pickle.dumps([1, 2, 3]), "it holds a list without weights"),
    (pickle.dumps({}), "it holds a dict without weights"),
    (pickle.dumps({"conv1.weight": "not an array"}), "its entry 'conv1.weight' is a str, not an array"),
]


def test_only_model_zoo_pickles_pass_others_are_one_line(tmp_path):
    for name, content in MODEL_ZOO.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(content))
        assert resolve_weights(str(path)) == str(path.resolve())
    bad = tmp_path / "x.pkl"
    for content, why in NOT_MODEL_ZOO:
        bad.write_bytes(content)
        with pytest.raises(PoliteTeacherError) as e:
            resolve_weights(str(bad))
        msg = str(e.value)
        assert msg.startswith(f"weights file {bad} is not a detectron2 / Caffe2 model-zoo pickle ({why}"), msg
        assert "--weights none" in msg and "\n" not in msg
