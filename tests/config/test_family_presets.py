"""The CenterMask family presets hold the recipes of vovnet.md §9.3, §11 and §12, and the Polite Teacher
stage-2 values of polite_teacher.md §4."""
import pytest

from politeteacher.config import resolve_config
from politeteacher.presets import list_presets, preset_path

DROPBOX = "https://www.dropbox.com/s/"
# preset → (MODEL.VOVNET.CONV_BODY or the backbone builder, MODEL.WEIGHTS) (vovnet.md §9.3)
BACKBONES = {
    "centermask_lite_V19_slim_dw_eSE_FPN_ms4x": ("V-19-slim-dw-eSE", DROPBOX + "f3s7ospitqoals1/vovnet19_ese_slim_dw_detectron2.pth?dl=1"),
    "centermask_lite_V19_slim_eSE_FPN_ms4x": ("V-19-slim-eSE", DROPBOX + "8h5ybmi4ftbcom0/vovnet19_ese_slim_detectron2.pth?dl=1"),
    "centermask_lite_V19_eSE_FPN_ms4x": ("V-19-eSE", DROPBOX + "rptgw6stppbiw1u/vovnet19_ese_detectron2.pth?dl=1"),
    "centermask_lite_V39_eSE_FPN_ms4x": ("V-39-eSE", DROPBOX + "q98pypf96rhtd8y/vovnet39_ese_detectron2.pth?dl=1"),
    "centermask_lite_Mv2_FPN_ms4x": ("build_fcos_mobilenetv2_fpn_backbone", DROPBOX + "yduxbc13s3ip6qn/mobilenet_v2_detectron2.pth?dl=1"),
    "centermask_V39_eSE_FPN_ms3x": ("V-39-eSE", DROPBOX + "q98pypf96rhtd8y/vovnet39_ese_detectron2.pth?dl=1"),
    "centermask_V57_eSE_FPN_ms3x": ("V-57-eSE", DROPBOX + "8xl0cb3jj51f45a/vovnet57_ese_detectron2.pth?dl=1"),
    "centermask_V99_eSE_FPN_ms3x": ("V-99-eSE", DROPBOX + "1mlv31coewx8trd/vovnet99_ese_detectron2.pth?dl=1"),
    "centermask_V39_eSE_dcn_FPN_ms3x": ("V-39-eSE", DROPBOX + "q98pypf96rhtd8y/vovnet39_ese_detectron2.pth?dl=1"),
    "centermask_V57_eSE_dcn_FPN_ms3x": ("V-57-eSE", DROPBOX + "8xl0cb3jj51f45a/vovnet57_ese_detectron2.pth?dl=1"),
    "centermask_V99_eSE_dcn_FPN_ms3x": ("V-99-eSE", DROPBOX + "1mlv31coewx8trd/vovnet99_ese_detectron2.pth?dl=1"),
}
SPLITS = (1, 2, 5, 10)


def _heads(cfg):
    return (cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.FCOS.NUM_CLS_CONVS, cfg.MODEL.FCOS.NUM_BOX_CONVS,
            cfg.MODEL.ROI_MASK_HEAD.NUM_CONV, cfg.MODEL.ROI_MASK_HEAD.CONV_DIM,
            cfg.MODEL.ROI_MASKIOU_HEAD.NUM_CONV, cfg.MODEL.ROI_MASKIOU_HEAD.CONV_DIM)


def _inputs(cfg):
    return (tuple(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)


LITE = dict(heads=(128, 2, 2, 2, 128, 2, 128), inputs=((580, 600), 1000, 600, 1000), steps=(300000, 340000), max_iter=360000)
FULL = dict(heads=(256, 4, 4, 4, 256, 4, 256), inputs=((640, 672, 704, 736, 768, 800), 1333, 800, 1333),
            steps=(210000, 250000), max_iter=270000)


@pytest.mark.parametrize("preset", list(BACKBONES))
def test_centermask2_recipes(preset):
    """vovnet.md §11: Lite vs full; every VoVNet / Mv2 preset trains the whole backbone on all of COCO."""
    cfg = resolve_config(preset)
    body, weights = BACKBONES[preset]
    if body.startswith("build_"):
        assert cfg.MODEL.BACKBONE.NAME == body
        assert list(cfg.MODEL.FPN.IN_FEATURES) == ["res3", "res4", "res5"]
    else:
        assert cfg.MODEL.BACKBONE.NAME == "build_fcos_vovnet_fpn_backbone" and cfg.MODEL.VOVNET.CONV_BODY == body
        assert list(cfg.MODEL.FPN.IN_FEATURES) == ["stage3", "stage4", "stage5"] == list(cfg.MODEL.VOVNET.OUT_FEATURES)
        assert cfg.MODEL.VOVNET.NORM == "FrozenBN"
    assert cfg.MODEL.WEIGHTS == weights
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0 and cfg.MODEL.FCOS.TOP_LEVELS == 2
    recipe = LITE if "_lite_" in preset else FULL
    assert _heads(cfg) == recipe["heads"] and _inputs(cfg) == recipe["inputs"]
    assert (tuple(cfg.SOLVER.STEPS), cfg.SOLVER.MAX_ITER) == (recipe["steps"], recipe["max_iter"])
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.CHECKPOINT_PERIOD) == (16, 0.01, 10000)
    assert cfg.MODEL.FCOS.POST_NMS_TOPK_TEST == 50 and cfg.DATASETS.SPLIT.PERCENT == 100.0
    dcn = "_dcn_" in preset
    assert list(cfg.MODEL.VOVNET.STAGE_WITH_DCN) == [False, dcn, dcn, dcn]
    assert cfg.MODEL.VOVNET.WITH_MODULATED_DCN == dcn and cfg.MODEL.VOVNET.DEFORMABLE_GROUPS == 1


def test_r101_recipe_is_r50s_with_depth_101():
    r50, r101 = resolve_config("centermask_R50_FPN_ms3x"), resolve_config("centermask_R101_FPN_ms3x")
    assert r101.MODEL.RESNETS.DEPTH == 101 and r101.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
    r101.MODEL.RESNETS.DEPTH, r101.MODEL.WEIGHTS = r50.MODEL.RESNETS.DEPTH, r50.MODEL.WEIGHTS
    assert r101.dump() == r50.dump()


@pytest.mark.parametrize("percent", SPLITS)
def test_baselines_hold_the_research_code_values(percent):
    """vovnet.md §12: batch 16, LR 0.01 for both (only the R-50 paper files double them)."""
    r101 = resolve_config(f"baseline_R101_sup{percent}")
    assert r101.MODEL.RESNETS.DEPTH == 101 and r101.MODEL.BACKBONE.FREEZE_AT == 2
    assert r101.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
    assert _heads(r101) == FULL["heads"] and _inputs(r101) == FULL["inputs"]
    assert (tuple(r101.SOLVER.STEPS), r101.SOLVER.MAX_ITER, r101.SOLVER.CHECKPOINT_PERIOD) == ((210000, 250000), 270000, 5000)

    lite = resolve_config(f"baseline_lite_V19_slim_eSE_sup{percent}")
    assert lite.MODEL.BACKBONE.NAME == "build_fcos_vovnet_fpn_backbone" and lite.MODEL.VOVNET.CONV_BODY == "V-19-slim-eSE"
    assert lite.MODEL.BACKBONE.FREEZE_AT == 0 and lite.MODEL.WEIGHTS == BACKBONES["centermask_lite_V19_slim_eSE_FPN_ms4x"][1]
    assert _heads(lite) == LITE["heads"] and _inputs(lite) == LITE["inputs"]
    assert (tuple(lite.SOLVER.STEPS), lite.SOLVER.MAX_ITER, lite.SOLVER.CHECKPOINT_PERIOD) == ((300000, 340000), 360000, 10000)

    for cfg in (r101, lite):
        assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.TEST.EVAL_PERIOD) == (16, 0.01, 1000)
        assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR, cfg.SOLVER.MOMENTUM) == (1000, 0.001, 0.9)
        assert (cfg.DATASETS.SPLIT.PERCENT, cfg.DATASETS.SPLIT.SEED, cfg.SEED) == (float(percent), 1, 1)
        assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.DATALOADER.ASPECT_RATIO_GROUPING


@pytest.mark.parametrize("family, baseline", [("R101", "centermask_R101_FPN_ms3x"),
                                              ("lite_V19_slim_eSE", "centermask_lite_V19_slim_eSE_FPN_ms4x")])
@pytest.mark.parametrize("percent", SPLITS)
def test_polite_teacher_presets_are_our_stage_2_on_the_baselines_model(family, baseline, percent):
    """The paper's stage 2 (polite_teacher.md §4) on the baseline's model and inputs, saying it is ours."""
    name = f"polite_teacher_{family}_sup{percent}"
    first = preset_path(name).read_text().splitlines()[0]
    assert "OUR recipe" in first and f"baseline_{family}_sup{percent}" in first
    cfg, model = resolve_config(name), resolve_config(baseline)
    assert cfg.MODEL.dump() == model.MODEL.dump() and _inputs(cfg) == _inputs(model)
    paper = resolve_config(f"polite_teacher_sup{percent}")
    assert cfg.SOLVER.dump() == paper.SOLVER.dump()
    assert cfg.SEMISUPERVISED.dump() == paper.SEMISUPERVISED.dump() and cfg.TEST.dump() == paper.TEST.dump()
    assert (cfg.DATASETS.SPLIT.PERCENT, cfg.DATASETS.SPLIT.SEED, cfg.SEED) == (float(percent), 1, 1)


def test_family_presets_are_listed():
    names = set(list_presets())
    assert names >= set(BACKBONES) | {"centermask_R101_FPN_ms3x"}
    assert names >= {f"{kind}_{family}_sup{p}" for kind in ("baseline", "polite_teacher")
                     for family in ("R101", "lite_V19_slim_eSE") for p in SPLITS}
    assert not any(n.startswith("Base-") for n in names)
