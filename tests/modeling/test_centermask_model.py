"""The whole CenterMask model on a small config: training losses, inference outputs, and the
interface the semi-supervised trainer uses (predict_for_pseudo_labels, gt_mask_valid)."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import build_backbone
from detectron2.structures import Boxes, Instances

from centermask_testutils import build_small_model, empty_input, make_shapes, small_cfg, to_model_input
from politeteacher.modeling import CenterMask

LOSS_KEYS = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"}
FIELDS = {"pred_boxes", "scores", "pred_classes", "pred_masks", "maskiou", "mask_scores"}


def _detecting(model):
    """Random weights detect nothing (class prior 0.01 < 0.05); a zero class bias makes every cell
    a 0.5-probability candidate and box outputs ~1 stride make realistic boxes. Larger mask
    predictor weights make mask logits (and so mask losses) depend on the ground truth."""
    head = model.proposal_generator.fcos_head
    with torch.no_grad():
        head.cls_logits.bias.zero_()
        head.bbox_pred.bias.fill_(1.0)
        torch.nn.init.normal_(model.roi_heads.mask_head.predictor.weight, std=1.0)
    return model


@pytest.fixture(scope="module")
def model():
    return build_small_model(num_classes=2)


@pytest.fixture(scope="module")
def records():
    return make_shapes(num_images=2, size=96, seed=3)


def test_build_model_from_config(model):
    assert isinstance(model, CenterMask)
    assert type(model.proposal_generator).__name__ == "FCOS"
    assert type(model.roi_heads).__name__ == "CenterMaskROIHeads"


@pytest.mark.parametrize("depth,res2", [(18, 64), (34, 64), (101, 256)])
def test_backbone_depths(depth, res2):
    cfg = small_cfg(extra=["MODEL.RESNETS.DEPTH", str(depth), "MODEL.RESNETS.RES2_OUT_CHANNELS", str(res2)])
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    assert list(shapes) == ["p3", "p4", "p5", "p6", "p7"]
    assert [s.stride for s in shapes.values()] == [8, 16, 32, 64, 128]
    if depth == 18:
        out = backbone(torch.zeros(1, 3, 128, 128))
        assert [tuple(v.shape[2:]) for v in out.values()] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_training_losses_and_gradients_reach_every_parameter(model, records):
    model.train()
    model.zero_grad()
    losses = model([to_model_input(r) for r in records])
    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)
    for name in ("proposal_generator.fcos_head.cls_logits.weight", "roi_heads.mask_head.predictor.weight",
                 "roi_heads.maskiou_head.maskiou.weight", "backbone.bottom_up.stem.conv1.weight"):
        assert dict(trainable)[name].grad.abs().sum() > 0, name


def test_box_branch_without_gradient_gives_the_gradients_of_zero_box_weights(records):
    """box_grad=False (the pseudo-label pass) skips the box branch's backward; the gradients equal
    those of weighting loss_fcos_loc / loss_fcos_ctr by 0, and the loss values are unchanged."""
    model = _detecting(build_small_model(num_classes=2))
    model.train()
    inputs = [to_model_input(r) for r in records]
    weights = {"loss_fcos_loc": 0.0, "loss_fcos_ctr": 0.0}

    def grads(box_grad):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        losses = model(inputs, box_grad=box_grad)
        sum(weights.get(k, 1.0) * v for k, v in losses.items()).backward()
        return losses, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    losses_ref, ref = grads(True)
    losses, got = grads(False)
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in losses_ref.items()}
    assert not losses["loss_fcos_loc"].requires_grad and losses["loss_fcos_cls"].requires_grad
    box_branch = ("fcos_head.bbox_tower.", "fcos_head.bbox_pred.", "fcos_head.ctrness.", "fcos_head.scales.")
    for name, g in got.items():
        if any(b in name for b in box_branch):
            assert g is None, name
            assert torch.equal(ref[name], torch.zeros_like(ref[name])), name
        else:
            torch.testing.assert_close(g, ref[name], rtol=1e-5, atol=1e-8, msg=name)


def test_images_without_annotations_train(model, records):
    model.train()
    model.zero_grad()
    losses = model([empty_input(96, 96, 0), empty_input(96, 128, 1)])
    assert set(losses) == LOSS_KEYS
    assert losses["loss_fcos_cls"].item() > 0  # background-only classification
    for k in ("loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"):
        assert losses[k].item() == 0 and losses[k].requires_grad, k
    sum(losses.values()).backward()
    assert model.proposal_generator.fcos_head.cls_logits.weight.grad.abs().sum() > 0
    # every trainable parameter is in the graph (DDP needs no find_unused_parameters)
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # mixed batch: one annotated, one empty image
    losses = model([to_model_input(records[0]), empty_input(96, 96)])
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"].item() > 0


def test_bare_instances_and_box_only_ground_truth_train(model, records):
    model.train()
    bare = empty_input(96, 96)
    bare["instances"] = Instances((96, 96))  # an unlabelled image that got no pseudo-label
    box_only = to_model_input(records[0])
    box_only["instances"].remove("gt_masks")
    losses = model([bare, box_only])
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_fcos_loc"].item() > 0  # boxes still supervise FCOS
    assert losses["loss_mask"].item() == 0 and losses["loss_maskiou"].item() == 0  # no masks: no signal
    sum(losses.values()).backward()


def test_training_with_bitmask_pseudo_labels_and_validity(records):
    model = _detecting(build_small_model(num_classes=2, seed=1))
    model.train()
    inputs = [to_model_input(r, mask_format="bitmask") for r in records]
    for inp in inputs:
        inp["instances"].gt_mask_valid = torch.zeros(len(inp["instances"]), dtype=torch.bool)
    losses = model(inputs)
    assert losses["loss_mask"].item() == 0 and losses["loss_mask"].requires_grad
    assert losses["loss_maskiou"].item() > 0
    inputs[0]["instances"].gt_mask_valid[0] = True
    assert model(inputs)["loss_mask"].item() > 0


def test_polygon_and_bitmask_ground_truth_give_equal_losses(records):
    model = _detecting(build_small_model(num_classes=2, seed=2))
    model.train()
    results = {}
    for fmt in ("polygon", "bitmask"):
        torch.manual_seed(0)
        results[fmt] = model([to_model_input(r, mask_format=fmt) for r in records])
    assert abs(results["polygon"]["loss_mask"].item() - 0.6931) > 0.01  # not the chance value
    for k in LOSS_KEYS:
        assert results["polygon"][k].item() == pytest.approx(results["bitmask"][k].item(), abs=1e-3), k


def test_eval_outputs_at_original_size(records):
    model = _detecting(build_small_model(num_classes=2, seed=3)).eval()
    inp = to_model_input(records[0])
    inp["height"], inp["width"] = 192, 144  # the input image is a 96 × 96 resize of it
    with torch.no_grad():
        (out,) = model([inp])
    inst = out["instances"]
    assert set(inst.get_fields()) == FIELDS
    assert 0 < len(inst) <= 50  # POST_NMS_TOPK_TEST of the preset
    assert inst.image_size == (192, 144)
    assert inst.pred_masks.shape == (len(inst), 192, 144) and inst.pred_masks.dtype == torch.bool
    assert torch.allclose(inst.mask_scores, inst.scores * inst.maskiou)
    assert (inst.scores[:-1] >= inst.scores[1:]).all()


def test_predict_for_pseudo_labels_in_input_coordinates(records):
    model = _detecting(build_small_model(num_classes=2, seed=4))
    inp = to_model_input(records[0])
    inp["height"], inp["width"] = 192, 192
    model.train()  # the teacher may be in either mode; no losses, no gradient either way
    (train_pp,) = model.predict_for_pseudo_labels([inp], postprocess="train")
    assert set(train_pp.get_fields()) == FIELDS
    assert train_pp.image_size == (96, 96)
    assert train_pp.pred_masks.shape == (len(train_pp), 1, 28, 28)
    assert not train_pp.pred_masks.requires_grad and not train_pp.maskiou.requires_grad
    assert 50 < len(train_pp) <= 100

    model.eval()
    (test_pp,) = model.predict_for_pseudo_labels([inp], postprocess="test")
    assert len(test_pp) == 50
    with torch.no_grad():
        (out,) = model([inp])
    # eval forward = the same detections rescaled ×2 to the original size, clipped to it there
    # (only there: pseudo-labels keep the raw boxes, centermask.md §2)
    rescaled = Boxes(test_pp.pred_boxes.tensor * 2)
    rescaled.clip((192, 192))
    keep = rescaled.nonempty()
    assert torch.allclose(out["instances"].pred_boxes.tensor, rescaled.tensor[keep], atol=1e-4)
    assert torch.allclose(out["instances"].maskiou, test_pp.maskiou[keep], atol=1e-5)


def test_score_threshold_filters_before_the_mask_heads(records):
    model = _detecting(build_small_model(num_classes=2, seed=5)).eval()
    inputs = [to_model_input(r) for r in records]
    full = model.predict_for_pseudo_labels(inputs)
    threshold = float(torch.cat([f.scores for f in full]).median())
    calls = []
    handles = [
        head.register_forward_hook(lambda m, i, o: calls.append((type(m).__name__, i[0].shape[0])))
        for head in (model.roi_heads.mask_head, model.roi_heads.maskiou_head)
    ]
    try:
        kept = model.predict_for_pseudo_labels(inputs, score_threshold=threshold)
    finally:
        for h in handles:
            h.remove()
    expected = sum(int((f.scores > threshold).sum()) for f in full)
    assert sum(len(k) for k in kept) == expected
    assert all((k.scores > threshold).all() for k in kept)
    assert dict(calls) == {"SpatialAttentionMaskHead": expected, "MaskIoUHead": expected}

    empty = model.predict_for_pseudo_labels(inputs, score_threshold=1.0)
    for e in empty:
        assert len(e) == 0 and set(e.get_fields()) == FIELDS
        assert e.pred_masks.shape == (0, 1, 28, 28)
    with pytest.raises(ValueError):
        model.predict_for_pseudo_labels(inputs, postprocess="val")


def test_training_requires_instances(model, records):
    model.train()
    inp = to_model_input(records[0])
    del inp["instances"]
    with pytest.raises(ValueError, match="instances"):
        model([inp])


def test_folding_frozen_batchnorm_keeps_the_predictions(records):
    """The R-50 presets' FrozenBN backbone: folded into its convolutions (eval / predict), boxes,
    scores and masks stay what the unfolded model predicts."""
    from detectron2.layers import FrozenBatchNorm2d

    from politeteacher.modeling import fold_frozen_batchnorm

    model = _detecting(build_small_model(num_classes=2, extra=["MODEL.RESNETS.NORM", "FrozenBN"]))
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    for bn in bns:  # statistics as trained weights have them, not the identity of a fresh model
        c = bn.num_features
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g) * 0.1)
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    model.eval()
    inputs = [to_model_input(r) for r in records]
    with torch.no_grad():
        before = model(inputs)
        assert fold_frozen_batchnorm(model) == len(bns) > 0
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
        after = model(inputs)
    for b, a in zip(before, after):
        b, a = b["instances"], a["instances"]
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        assert torch.equal(a.pred_classes, b.pred_classes)
        assert (a.pred_masks != b.pred_masks).float().mean() < 1e-3
