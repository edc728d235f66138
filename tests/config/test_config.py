import pytest
import yaml

from politeteacher.config import ConfigError, resolve_config, save_config
from politeteacher.presets import PresetNotFound, list_presets, preset_path


def test_every_preset_resolves_with_paper_values():
    for name in list_presets():
        cfg = resolve_config(name)
        assert cfg.MODEL.META_ARCHITECTURE == "CenterMask"
    pt = resolve_config("polite_teacher_sup5")
    assert (pt.SOLVER.BASE_LR, pt.SOLVER.MAX_ITER, pt.SOLVER.IMS_PER_BATCH) == (0.006, 180000, 16)
    assert pt.SOLVER.IMS_PER_BATCH_UNLABELED == 16
    assert pt.SEMISUPERVISED.BOX_THRESHOLD == 0.6 and pt.SEMISUPERVISED.MASK_IOU_THRESHOLD == 0.9
    assert pt.SEMISUPERVISED.UNSUP_LOSS_WEIGHT == 2.0 and pt.SEMISUPERVISED.EMA_KEEP_RATE == 0.9996
    assert pt.DATASETS.SPLIT.PERCENT == 5.0 and pt.DATASETS.SPLIT.SEED == 1
    base = resolve_config("baseline_sup10")
    assert (base.SOLVER.IMS_PER_BATCH, base.SOLVER.BASE_LR, base.SOLVER.STEPS) == (32, 0.02, (210000, 250000))
    assert base.MODEL.RESNETS.NORM == "FrozenBN" and base.MODEL.RESNETS.DEPTH == 50
    assert base.MODEL.FCOS.POST_NMS_TOPK_TEST == 50 and base.MODEL.FCOS.POST_NMS_TOPK_TRAIN == 100


def test_demo_model_is_pretrained_from_scratch_on_the_source_set_with_trainable_norm():
    source, demo = resolve_config("demo_source"), resolve_config("demo")
    assert source.MODEL.WEIGHTS == "" and source.MODEL.BACKBONE.FREEZE_AT == 0
    assert source.DATASETS.TRAIN == ("demo_source_train",) and source.DATASETS.SPLIT.PERCENT == 100
    assert demo.MODEL.WEIGHTS == "politeteacher://demo_source_R18_GN.pkl" and demo.DATASETS.TRAIN == ("demo_train",)
    for cfg in (source, demo):
        assert cfg.MODEL.RESNETS.NORM not in ("FrozenBN", "")
        assert cfg.SOLVER.CLIP_GRADIENTS.ENABLED


def test_overrides_win_and_are_validated():
    cfg = resolve_config("demo", overrides=["SOLVER.MAX_ITER", "7", "SEMISUPERVISED.BOX_THRESHOLD", "0.7"])
    assert cfg.SOLVER.MAX_ITER == 7 and cfg.SEMISUPERVISED.BOX_THRESHOLD == 0.7
    with pytest.raises(ConfigError, match="KEY VALUE"):
        resolve_config("demo", overrides=["SOLVER.MAX_ITER"])
    with pytest.raises(ConfigError, match="NO_SUCH_KEY"):
        resolve_config("demo", overrides=["SOLVER.NO_SUCH_KEY", "1"])


def test_user_yaml_can_base_a_preset_by_name(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("_BASE_: polite_teacher_sup1\nSOLVER:\n  MAX_ITER: 123\n")
    cfg = resolve_config(config_file=str(f))
    assert cfg.SOLVER.MAX_ITER == 123 and cfg.SOLVER.BASE_LR == 0.006
    assert cfg.DATASETS.SPLIT.PERCENT == 1.0


def test_bad_config_files_give_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(config_file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(config_file=str(bad))
    with pytest.raises(PresetNotFound, match="unknown preset 'nope'"):
        resolve_config("nope")


def test_saved_config_round_trips(tmp_path):
    cfg = resolve_config("demo", overrides=["SOLVER.MAX_ITER", "9"])
    path = save_config(cfg, tmp_path / "run")
    assert yaml.safe_load(path.read_text())["SOLVER"]["MAX_ITER"] == 9
    again = resolve_config(config_file=str(path))
    assert yaml.safe_load(again.dump()) == yaml.safe_load(cfg.dump())


def test_the_paper_presets_are_listed():
    assert preset_path("demo").is_file()
    assert set(list_presets()) >= {f"{k}_sup{p}" for k in ("baseline", "polite_teacher") for p in (1, 2, 5, 10)}


def test_percent_and_other_float_keys_take_integers(tmp_path):
    # The advice of the split errors, `DATASETS.SPLIT.PERCENT 100`, as an override and in a file.
    cfg = resolve_config("demo", overrides=["DATASETS.SPLIT.PERCENT", "100", "SOLVER.BASE_LR", "1"])
    assert cfg.DATASETS.SPLIT.PERCENT == 100.0 and isinstance(cfg.DATASETS.SPLIT.PERCENT, float)
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    f = tmp_path / "mine.yaml"
    f.write_text("_BASE_: demo\nDATASETS:\n  SPLIT:\n    PERCENT: 50\n")
    cfg = resolve_config(config_file=str(f))
    assert cfg.DATASETS.SPLIT.PERCENT == 50.0 and isinstance(cfg.DATASETS.SPLIT.PERCENT, float)
    # Other mismatches are still refused, and an integer key does not take a fraction.
    for key, value in (("SOLVER.MAX_ITER", "1.5"), ("SOLVER.BASE_LR", "True"), ("DATASETS.SPLIT.PERCENT", "'ten'")):
        with pytest.raises(ConfigError, match=f"Type mismatch.*{key}"):
            resolve_config("demo", overrides=[key, value])


def test_the_mask_loss_normalisation_is_a_model_key_and_old_configs_still_set_it(tmp_path):
    from politeteacher.config import get_politeteacher_cfg
    from politeteacher.modeling.build import build_centermask
    from tiny import TINY_MODEL

    old = tmp_path / "config.yaml"  # as a run of politeteacher 0.3 saved it
    old.write_text("SEMISUPERVISED:\n  MASK_LOSS_NORM: valid\n")
    cfg = get_politeteacher_cfg()
    cfg.merge_from_file(str(old))
    assert cfg.MODEL.ROI_MASK_HEAD.MASK_LOSS_NORM == "valid" and "MASK_LOSS_NORM" not in cfg.SEMISUPERVISED
    cfg = get_politeteacher_cfg()
    cfg.merge_from_list([*TINY_MODEL, "MODEL.DEVICE", "cpu", "SEMISUPERVISED.MASK_LOSS_NORM", "valid"])
    assert build_centermask(cfg, announce=False).roi_heads.mask_loss_norm == "valid"
