"""ImageNet backbone files (CenterMask2's ``vovnet*_detectron2.pth``, vovnet.md §9.3) as starting weights:
loaded strictly into the bottom-up network by the same loader as whole checkpoints."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import build_model

import politeteacher.modeling  # noqa: F401
from politeteacher.config import resolve_config
from politeteacher.engine.checkpoint import load_initial_weights
from politeteacher.errors import PoliteTeacherError


def lite(body: str = "V-19-slim-dw-eSE", seed: int = 0):
    torch.manual_seed(seed)
    cfg = resolve_config("centermask_lite_V19_slim_dw_eSE_FPN_ms4x",
                         overrides=["MODEL.WEIGHTS", "", "MODEL.VOVNET.CONV_BODY", body])
    return build_model(cfg)


@pytest.mark.parametrize("layout", ["bare", "prefixed", "detectron2"])
def test_imagenet_backbone_file_initialises_the_bottom_up_only(tmp_path, layout):
    source = lite(seed=1).backbone.bottom_up.state_dict()
    if layout == "bare":
        checkpoint = dict(source)
    else:
        checkpoint = {f"backbone.bottom_up.{k}": v for k, v in source.items()}
    if layout == "detectron2":
        checkpoint = {"model": checkpoint, "__author__": "ImageNet"}
    path = tmp_path / "vovnet19_ese_slim_dw_detectron2.pth"
    torch.save(checkpoint, path)

    model = lite(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.bottom_up.")}
    load_initial_weights(model, str(path))
    for k, v in model.backbone.bottom_up.state_dict().items():
        assert torch.equal(v, source[k]), k
    for k, v in model.state_dict().items():
        if k in before:
            assert torch.equal(v, before[k]), k  # FPN and heads keep their initialisation


def test_backbone_file_of_another_backbone_is_refused(tmp_path):
    path = tmp_path / "vovnet19_ese_detectron2.pth"
    torch.save(lite("V-19-eSE").backbone.bottom_up.state_dict(), path)
    with pytest.raises(PoliteTeacherError, match=r"does not fit this backbone \(.*shape mismatches") as err:
        load_initial_weights(lite(), str(path))
    assert "\n" not in str(err.value)
    torch.save({"stem.stem_1/conv.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(PoliteTeacherError, match="missing keys"):
        load_initial_weights(lite(), str(path))


def test_whole_checkpoint_still_loads_as_a_model(tmp_path):
    source = lite(seed=1)
    path = tmp_path / "model_final.pth"
    torch.save({"model": source.state_dict(), "iteration": 10}, path)
    model = lite(seed=2)
    load_initial_weights(model, str(path))
    key = "roi_heads.maskiou_head.maskiou.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    headless = {k: v for k, v in source.state_dict().items() if not k.startswith("roi_heads.maskiou_head.")}
    torch.save(headless, path)
    with pytest.raises(PoliteTeacherError, match="does not fit this CenterMask model"):
        load_initial_weights(model, str(path))
