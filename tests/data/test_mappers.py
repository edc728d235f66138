import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import BitMasks, PolygonMasks

from politeteacher.data.augment import StrongAugmentation
from politeteacher.data.datasets import register_all
from politeteacher.data.mappers import TwoViewMapper, WeakMapper
from politeteacher.data.splits import labeled_and_unlabeled


@pytest.fixture
def toy_dicts(toy_cfg):
    register_all(toy_cfg)
    return sorted(DatasetCatalog.get("custom_train"), key=lambda d: d["image_id"])


def _no_strong_aug(cfg):
    cfg.INPUT.STRONG.COLOR_JITTER_PROB = cfg.INPUT.STRONG.GRAYSCALE_PROB = cfg.INPUT.STRONG.BLUR_PROB = 0.0
    cfg.INPUT.STRONG.CUTOUTS = [[0.0, 0.05, 0.2, 0.3, 3.3]]


def _expected_boxes(d, image_shape, flipped):
    """The dataset's XYWH boxes, resized to the output size and optionally mirrored."""
    h, w = image_shape
    sy, sx = h / d["height"], w / d["width"]
    boxes = np.array([[x * sx, y * sy, (x + bw) * sx, (y + bh) * sy]
                      for x, y, bw, bh in (a["bbox"] for a in d["annotations"])])
    if flipped:
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    return boxes


def test_weak_mapper_resizes_and_keeps_polygons(toy_cfg, toy_dicts):
    d = toy_dicts[0]
    out = WeakMapper(toy_cfg, is_train=True)(d)
    h, w = out["image"].shape[1:]
    assert min(h, w) in (48, 64) and out["image"].dtype == torch.uint8
    assert isinstance(out["instances"].gt_masks, PolygonMasks)
    assert len(out["instances"]) == len(d["annotations"])
    assert "annotations" in d  # the dataset dict is not modified


def test_weak_mapper_bitmasks(toy_cfg, toy_dicts):
    toy_cfg.INPUT.MASK_FORMAT = "bitmask"
    out = WeakMapper(toy_cfg, is_train=True)(toy_dicts[0])
    masks = out["instances"].gt_masks
    assert isinstance(masks, BitMasks) and masks.tensor.shape[1:] == out["image"].shape[1:]


def test_weak_mapper_at_test_time(toy_cfg, toy_dicts):
    out = WeakMapper(toy_cfg, is_train=False)(toy_dicts[0])
    assert min(out["image"].shape[1:]) == 64 and "instances" not in out and "annotations" not in out


def test_two_views_share_geometry_and_flip_together(toy_cfg, toy_dicts):
    mapper = TwoViewMapper(toy_cfg, is_train=True, labeled=True)
    d = next(x for x in toy_dicts if len(x["annotations"]) >= 2)
    flips = set()
    for seed in range(16):
        torch.manual_seed(seed)
        np.random.seed(seed)
        weak, strong = mapper(d)
        assert weak["image"].shape == strong["image"].shape
        assert not torch.equal(weak["image"], strong["image"])
        wb, sb = weak["instances"].gt_boxes.tensor, strong["instances"].gt_boxes.tensor
        assert torch.equal(wb, sb)
        assert torch.equal(weak["instances"].gt_classes, strong["instances"].gt_classes)
        assert [p[0].tolist() for p in weak["instances"].gt_masks.polygons] == \
            [p[0].tolist() for p in strong["instances"].gt_masks.polygons]
        shape = tuple(weak["image"].shape[1:])
        flipped = [np.allclose(wb.numpy(), _expected_boxes(d, shape, f), atol=1e-3) for f in (False, True)]
        assert any(flipped)
        flips.add(flipped[1])
    assert flips == {False, True}  # both flipped and unflipped pairs were drawn


def test_without_photometric_noise_the_strong_view_is_the_weak_view(toy_cfg, toy_dicts):
    _no_strong_aug(toy_cfg)
    mapper = TwoViewMapper(toy_cfg, is_train=True, labeled=True)
    for seed in range(6):
        torch.manual_seed(seed)
        np.random.seed(seed)
        weak, strong = mapper(toy_dicts[1])
        assert torch.equal(weak["image"], strong["image"])  # same resize, same flip, pixel for pixel


def test_unlabelled_views_carry_no_instances(toy_cfg, toy_dicts):
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.PERCENT = 50.0
    _, unlabeled = labeled_and_unlabeled(cfg)
    mapper = TwoViewMapper(toy_cfg, is_train=True, labeled=False)
    d = next(x for x in unlabeled if len(x.get("hidden_annotations", ())) >= 1)
    weak, strong = mapper(d)
    for view in (weak, strong):
        assert "instances" not in view and "annotations" not in view
    assert torch.equal(weak["hidden_instances"].gt_boxes.tensor, strong["hidden_instances"].gt_boxes.tensor)
    # even a dict that still has annotations gives no training targets when unlabelled
    weak, strong = mapper(toy_dicts[0])
    assert not {"instances", "annotations", "hidden_instances"} & (weak.keys() | strong.keys())


def test_strong_augmentation_keeps_shape_and_channel_order():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (40, 50, 3), dtype=np.uint8)
    torch.manual_seed(0)
    out = StrongAugmentation()(image)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)

    gray_only = dict(color_jitter_prob=0.0, grayscale_prob=1.0, blur_prob=0.0, cutouts=())
    blue_bgr = np.zeros((8, 8, 3), np.uint8)
    blue_bgr[..., 0] = 255  # pure blue in BGR: ITU-R 601 luma 0.114 * 255
    gray = StrongAugmentation(image_format="BGR", **gray_only)(blue_bgr)
    assert np.all(gray == gray[..., :1]) and abs(int(gray[0, 0, 0]) - 29) <= 1
    gray = StrongAugmentation(image_format="RGB", **gray_only)(blue_bgr)  # pure red in RGB
    assert abs(int(gray[0, 0, 0]) - 76) <= 1


def test_cutouts_fill_rectangles_with_noise():
    image = np.full((60, 60, 3), 128, np.uint8)
    aug = StrongAugmentation(color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                             cutouts=[(1.0, 0.05, 0.2, 0.3, 3.3)])
    torch.manual_seed(1)
    changed = np.any(aug(image) != 128, axis=2)
    ys, xs = np.nonzero(changed)
    box_area = (ys.ptp() + 1) * (xs.ptp() + 1)
    assert 0.03 * 3600 <= box_area <= 0.2 * 3600 and changed.sum() > 0.8 * box_area


def test_cutouts_draw_like_torchvision_random_erasing():
    from torchvision import transforms as T

    from politeteacher.data.augment import _cutout

    image = np.random.RandomState(2).randint(0, 256, (50, 70, 3), dtype=np.uint8)
    erasing = T.RandomErasing(p=0.7, scale=(0.05, 0.2), ratio=(0.3, 3.3), value="random")
    for seed in range(8):
        torch.manual_seed(seed)
        expected = erasing(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        torch.manual_seed(seed)
        ours = image.copy()
        _cutout(erasing, ours)
        assert np.array_equal(ours, expected)


def test_strong_augmentation_from_config(toy_cfg):
    toy_cfg.INPUT.STRONG.CUTOUTS = [[1.0, 0.1, 0.1, 1.0, 1.0]]
    aug = StrongAugmentation(toy_cfg)
    assert len(aug.cutouts) == 1 and aug.cutouts[0].scale == (0.1, 0.1) and aug.cutouts[0].p == 1.0
