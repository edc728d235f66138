"""`politeteacher export` (issue #13): TorchScript and ONNX files that give what `predict` gives."""
import json

import numpy as np
import pytest
import torch

from politeteacher.inference.export import OUTPUTS, exported_to_instances
from politeteacher.inference.model import InputMaker
from .helpers import assert_usage_error, run_in_process
from .test_predict_outputs import demo_run, make_photos, predict_args  # noqa: F401


def _predict(demo_run, photos, out):
    code, stdout, err = run_in_process(*predict_args(demo_run, photos, "-o", out, "--no-overlays"))
    assert code == 0, stdout + err
    return json.loads((out / "predictions.json").read_text())


def _matches_predict(run_exported, photos, predicted):
    """The exported model, run as the README says, gives predict's detections: same classes, boxes within
    1e-3 px, scores within 1e-5, and masks differing in at most 0.1 % of their pixels (pixels whose
    probability is within rounding of 0.5 may flip)."""
    from detectron2.config import get_cfg  # noqa: F401  (detectron2 loaded as in predict)
    from detectron2.data import detection_utils
    from pycocotools import mask as mask_util

    cfg = type("Cfg", (), {})()
    cfg.INPUT = type("Input", (), {"MIN_SIZE_TEST": 128, "MAX_SIZE_TEST": 160})()
    prepare = InputMaker(cfg)
    for image_id, path in enumerate(sorted(photos.iterdir()), start=1):
        image = detection_utils.read_image(str(path), format="BGR")
        x = prepare(image)
        outputs = run_exported(x["image"])
        assert len(outputs) == len(OUTPUTS)
        inst = exported_to_instances(outputs, image.shape[:2])
        expected = [r for r in predicted if r["image_id"] == image_id]
        assert len(inst) == len(expected) > 0
        boxes = inst.pred_boxes.tensor.numpy()
        for k, r in enumerate(expected):
            x0, y0, w, h = r["bbox"]
            assert boxes[k] == pytest.approx([x0, y0, x0 + w, y0 + h], abs=1e-3)
            assert float(inst.scores[k]) == pytest.approx(r["score"], abs=1e-5)
            mask = mask_util.decode(r["segmentation"]).astype(bool)
            assert (inst.pred_masks[k].numpy() != mask).sum() <= 0.001 * mask.size


def test_torchscript_export_gives_what_predict_gives(demo_run, tmp_path):
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png"])
    target = tmp_path / "model.ts"
    code, out, err = run_in_process("export", "--weights", demo_run.weights, "-o", target,
                                    "--sample", photos / "a.png", "--sample", photos / "b.png")
    assert code == 0, out + err
    assert "checked on 2 image(s)" in out
    info = json.loads((tmp_path / "model.ts.json").read_text())
    assert info["outputs"] == list(OUTPUTS) and info["classes"] == demo_run.names and info["model"] == "teacher"
    assert info["input"]["resize"] == {"short_side": 128, "max_long_side": 160}
    assert all(info["check"]["max_difference"][k] <= v for k, v in info["check"]["tolerance"].items())
    module = torch.jit.load(str(target))
    _matches_predict(lambda image: module(image), photos, _predict(demo_run, photos, tmp_path / "pred"))
    # Nothing is overwritten.
    before = target.read_bytes()
    assert_usage_error(*run_in_process("export", "--weights", demo_run.weights, "-o", target),
                          "model.ts exists", "-o")
    assert target.read_bytes() == before


def test_onnx_export_gives_what_predict_gives(demo_run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png"], seed=5)
    code, out, err = run_in_process("export", "--weights", demo_run.weights, "--format", "onnx",
                                    "-o", tmp_path / "model.onnx")
    assert code == 0, out + err
    assert "checked on 2 image(s)" in out  # the two generated samples
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    _matches_predict(lambda image: session.run(None, {"image": image.numpy()}), photos,
                     _predict(demo_run, photos, tmp_path / "pred"))


def test_export_refuses_an_unknown_format(demo_run, tmp_path):
    assert_usage_error(*run_in_process("export", "--weights", demo_run.weights, "--format", "tflite",
                                          "-o", tmp_path / "m"), "--format must be torchscript or onnx")
    assert not list(tmp_path.iterdir())
