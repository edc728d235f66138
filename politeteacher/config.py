"""Project config keys on top of detectron2's, and resolution of presets, files and overrides.

Every key that politeteacher reads is added by :func:`add_politeteacher_config`, with the paper's
value as its default, so a resolved config written next to a run documents everything that run used.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence

import torch
import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .errors import PoliteTeacherError
from .io import atomic_write_text
from .presets import preset_path


class ConfigError(PoliteTeacherError):
    """A config that cannot be resolved; the message says what to change."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints_as_floats(new: Mapping, current: Any) -> None:
    """Turn, in place, the integers of ``new`` whose key holds a float in ``current`` into floats."""
    for key, value in new.items():
        old = current.get(key) if isinstance(current, Mapping) else None
        if isinstance(value, Mapping):
            _ints_as_floats(value, old)
        elif _is_int(value) and isinstance(old, float):
            new[key] = float(value)


# Keys of politeteacher <= 0.3 read under their new name (configs saved by runs of those versions).
MOVED_KEYS = {"SEMISUPERVISED.MASK_LOSS_NORM": "MODEL.ROI_MASK_HEAD.MASK_LOSS_NORM"}


def _move_old_keys(tree: Mapping) -> None:
    for old, new in MOVED_KEYS.items():
        *parents, leaf = old.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and leaf in node:
            value = node.pop(leaf)
            *parents, leaf = new.split(".")
            target = tree
            for part in parents:
                target = target.setdefault(part, type(tree)())
            target[leaf] = value


class ConfigNode(CN):
    """detectron2's CfgNode that takes an integer for a key whose value is a float
    (``DATASETS.SPLIT.PERCENT 100``, ``PERCENT: 100`` in a YAML file), which yacs refuses as a type
    mismatch, and the old names of moved keys (`MOVED_KEYS`); everything else is checked as before."""

    def merge_from_other_cfg(self, cfg_other):
        _move_old_keys(cfg_other)  # merge_from_file comes here too
        _ints_as_floats(cfg_other, self)
        return super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list: List):
        cfg_list = list(cfg_list)
        for i in range(0, len(cfg_list), 2):
            cfg_list[i] = MOVED_KEYS.get(cfg_list[i], cfg_list[i])
        for i in range(1, len(cfg_list), 2):
            node: Any = self
            for part in str(cfg_list[i - 1]).split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            value = self._decode_cfg_value(cfg_list[i])
            if isinstance(node, float) and _is_int(value):
                cfg_list[i] = float(value)
        return super().merge_from_list(cfg_list)


def add_politeteacher_config(cfg: CN) -> CN:
    """Add every project key (model, data, semi-supervised method) to a detectron2 config in place."""
    _C = cfg
    _C.MODEL.META_ARCHITECTURE = "CenterMask"
    _C.MODEL.BACKBONE.NAME = "build_fcos_resnet_fpn_backbone"
    _C.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    _C.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    _C.MODEL.PROPOSAL_GENERATOR.NAME = "FCOS"
    _C.MODEL.MASK_ON = True
    _C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    _C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

    # VoVNetV2 backbones (vovnet.md §9.1); used when MODEL.BACKBONE.NAME is build_fcos_vovnet_fpn_backbone.
    _C.MODEL.VOVNET = CN()
    _C.MODEL.VOVNET.CONV_BODY = "V-39-eSE"
    _C.MODEL.VOVNET.OUT_FEATURES = ["stage2", "stage3", "stage4", "stage5"]
    _C.MODEL.VOVNET.NORM = "FrozenBN"
    # Read by no code (the FPN width is MODEL.FPN.OUT_CHANNELS); kept so CenterMask2 YAML files merge.
    _C.MODEL.VOVNET.OUT_CHANNELS = 256
    _C.MODEL.VOVNET.BACKBONE_OUT_CHANNELS = 256
    # Deformable 3×3 layers per stage (2-5), as in the `dcn` presets (vovnet.md §8).
    _C.MODEL.VOVNET.STAGE_WITH_DCN = [False, False, False, False]
    _C.MODEL.VOVNET.WITH_MODULATED_DCN = False
    _C.MODEL.VOVNET.DEFORMABLE_GROUPS = 1

    # FCOS: the one-stage detector whose detections are the proposals (centermask.md §2).
    _C.MODEL.FCOS = CN()
    _C.MODEL.FCOS.NUM_CLASSES = 80
    # Levels above P5 computed from the FPN's P5: 2 → P6, P7; 1 → P6; 0 → none (vovnet.md §7.3).
    _C.MODEL.FCOS.TOP_LEVELS = 2
    _C.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.MODEL.FCOS.FPN_STRIDES = [8, 16, 32, 64, 128]
    _C.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128, 256, 512]
    _C.MODEL.FCOS.NUM_CLS_CONVS = 4
    _C.MODEL.FCOS.NUM_BOX_CONVS = 4
    _C.MODEL.FCOS.NORM = "GN"
    _C.MODEL.FCOS.PRIOR_PROB = 0.01
    _C.MODEL.FCOS.CENTER_SAMPLE = True
    _C.MODEL.FCOS.POS_RADIUS = 1.5
    _C.MODEL.FCOS.LOSS_ALPHA = 0.25
    _C.MODEL.FCOS.LOSS_GAMMA = 2.0
    _C.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    _C.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    _C.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    _C.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    _C.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
    _C.MODEL.FCOS.POST_NMS_TOPK_TEST = 50
    _C.MODEL.FCOS.NMS_TH = 0.6

    # Mask branch: CenterMask ROI heads (centermask.md §3-§5).
    _C.MODEL.ROI_HEADS.NAME = "CenterMaskROIHeads"
    _C.MODEL.ROI_HEADS.IN_FEATURES = ["p3", "p4", "p5"]
    _C.MODEL.ROI_HEADS.NUM_CLASSES = 80
    _C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    _C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
    _C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
    _C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
    _C.MODEL.ROI_MASK_HEAD.NAME = "SpatialAttentionMaskHead"
    _C.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
    _C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
    _C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"
    # "ratio": CenterMask's adaptive level rule (Eq. 2); "area": detectron2's stock FPN rule.
    _C.MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION = "ratio"
    # Mask loss when some regions' masks are invalid (pseudo masks below SEMISUPERVISED.MASK_IOU_THRESHOLD):
    # "all": summed over valid regions / all regions (the paper's numbers); "valid": mean over valid ones.
    _C.MODEL.ROI_MASK_HEAD.MASK_LOSS_NORM = "all"
    _C.MODEL.MASKIOU_ON = True
    _C.MODEL.ROI_MASKIOU_HEAD = CN()
    _C.MODEL.ROI_MASKIOU_HEAD.NAME = "MaskIoUHead"
    _C.MODEL.ROI_MASKIOU_HEAD.NUM_CONV = 4
    _C.MODEL.ROI_MASKIOU_HEAD.CONV_DIM = 256
    _C.MODEL.ROI_MASKIOU_HEAD.FC_DIM = 1024
    _C.MODEL.ROI_MASKIOU_HEAD.LOSS_WEIGHT = 1.0

    # Data: built-in names resolve under $DETECTRON2_DATASETS; custom files by path, no code.
    _C.DATASETS.SPLIT = CN()
    _C.DATASETS.SPLIT.FILE = ""  # a split JSON written by `politeteacher split`
    _C.DATASETS.SPLIT.PERCENT = 10.0  # used when FILE is empty: make the split on the fly
    _C.DATASETS.SPLIT.SEED = 1
    _C.DATASETS.UNLABELED_IMAGE_DIRS = []  # extra folders of raw images for the unlabelled pool
    _C.DATASETS.CUSTOM = CN()
    _C.DATASETS.CUSTOM.TRAIN_JSON = ""
    _C.DATASETS.CUSTOM.TRAIN_IMAGES = ""
    _C.DATASETS.CUSTOM.VAL_JSON = ""
    _C.DATASETS.CUSTOM.VAL_IMAGES = ""
    # A training run decodes every image it will read before it starts (data.checks); with
    # SKIP_BAD_IMAGES, the training and unlabelled ones that fail are left out, and the check
    # writes their paths into SKIPPED_IMAGES (an output: what the run skipped, for its workers and
    # its config.yaml), instead of stopping the command.
    _C.DATALOADER.SKIP_BAD_IMAGES = False
    _C.DATALOADER.SKIPPED_IMAGES = []
    # True: the annotations' masks are not used (box-only data is accepted); on labelled images
    # the mask and MaskIoU losses are 0.
    _C.INPUT.BOXES_ONLY = False
    # Class names of the training set, written by data.apply_dataset_classes so that a run's
    # config.yaml names its classes (predict needs them without the dataset at hand).
    _C.DATASETS.CLASS_NAMES = []
    # The dataset file (`--data`) the DATASETS entries came from, recorded in the run's config.yaml;
    # the entries themselves are already in DATASETS.*, so nothing reads this key back.
    _C.DATASETS.DATA_FILE = ""

    # Strong view of an unlabelled image (polite_teacher.md §5); geometry is the weak view's.
    _C.INPUT.STRONG = CN()
    _C.INPUT.STRONG.COLOR_JITTER = [0.4, 0.4, 0.4, 0.1]  # brightness, contrast, saturation, hue
    _C.INPUT.STRONG.COLOR_JITTER_PROB = 0.8
    _C.INPUT.STRONG.GRAYSCALE_PROB = 0.2
    _C.INPUT.STRONG.BLUR_PROB = 0.5
    _C.INPUT.STRONG.BLUR_SIGMA = [0.1, 2.0]
    # One row per cutout: probability, scale min, scale max, ratio min, ratio max.
    _C.INPUT.STRONG.CUTOUTS = [
        [0.7, 0.05, 0.2, 0.3, 3.3],
        [0.5, 0.02, 0.2, 0.1, 6.0],
        [0.3, 0.02, 0.2, 0.05, 8.0],
    ]

    # Solver additions. IMS_PER_BATCH (labelled) and IMS_PER_BATCH_UNLABELED are totals over all workers.
    _C.SOLVER.IMS_PER_BATCH_UNLABELED = 16
    _C.SOLVER.OPTIMIZER = "SGD"  # the paper's; "ADAMW" for small models trained from scratch (demo)
    _C.SOLVER.MAX_CHECKPOINTS_KEPT = 3
    _C.SOLVER.LOG_PERIOD = 20

    # Polite Teacher (polite_teacher.md §2-§5).
    _C.SEMISUPERVISED = CN()
    _C.SEMISUPERVISED.BURN_IN_ITERS = 0  # >0: supervised-only iterations before the teacher is made
    _C.SEMISUPERVISED.EMA_KEEP_RATE = 0.9996
    _C.SEMISUPERVISED.BOX_THRESHOLD = 0.6  # keep teacher detections with score > this
    _C.SEMISUPERVISED.MASK_IOU_THRESHOLD = 0.9  # pseudo mask valid when raw maskiou > this
    _C.SEMISUPERVISED.UNSUP_LOSS_WEIGHT = 2.0
    _C.SEMISUPERVISED.PSEUDO_LOC_WEIGHT = 0.0
    _C.SEMISUPERVISED.PSEUDO_CTR_WEIGHT = 0.0
    # "train": FCOS training post-processing for the teacher (top 100, the reference); "test": top 50.
    _C.SEMISUPERVISED.TEACHER_POSTPROCESS = "train"
    _C.SEMISUPERVISED.EVAL_STUDENT = True
    # Warn (one line) when no pseudo-label passed in this many logging periods in a row; 0: never.
    # (VIS_PERIOD > 0, detectron2's key, also saves a few pseudo-labelled images every VIS_PERIOD
    # iterations to TensorBoard and OUTPUT_DIR/pseudo/.)
    _C.SEMISUPERVISED.NO_PSEUDO_LABEL_WARN_PERIODS = 5
    # Switches of the reference code, all off in the paper's configs (polite_teacher.md §3):
    # - leave the unlabelled images that got no pseudo-label out of the student's batch (the
    #   teacher still sees them), against background-only starvation when the teacher finds little;
    _C.SEMISUPERVISED.DROP_IMAGES_WITHOUT_PSEUDO_LABELS = False
    # - rescale each pseudo loss by EMA(its supervised twin) / EMA(itself), the EMAs keeping
    #   NORM_LOSS_KEEP_RATE of their value per step, then divide the total by (1 + UNSUP_LOSS_WEIGHT);
    _C.SEMISUPERVISED.NORM_LOSS = False
    _C.SEMISUPERVISED.NORM_LOSS_KEEP_RATE = 0.9997
    # - False: the pseudo mask and MaskIoU losses are weighted 0 (pseudo boxes train classes only);
    _C.SEMISUPERVISED.PSEUDO_MASK_LOSSES = True
    # - False: the pseudo MaskIoU loss alone is weighted 0.
    _C.SEMISUPERVISED.PSEUDO_MASKIOU_LOSS = True
    return cfg


def get_politeteacher_cfg() -> ConfigNode:
    """detectron2's defaults plus every politeteacher key."""
    return ConfigNode(add_politeteacher_config(get_cfg()))


def _resolve_base(path: Path) -> Path:
    """Return a file whose `_BASE_` is loadable: a bare preset name is replaced by the preset's path."""
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML ({e.__class__.__name__}); fix the file") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping of config keys")
    base = data.get("_BASE_")
    if not base or os.path.isabs(base) or (path.parent / base).exists():
        return path
    name = base.removeprefix("preset:")
    data["_BASE_"] = str(preset_path(name))
    # detectron2 resolves _BASE_ from a file path, so hand it a copy that names the preset's file.
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    with tmp:
        yaml.safe_dump(data, tmp)
    return Path(tmp.name)


def resolve_config(
    preset: Optional[str] = None,
    config_file: Optional[str] = None,
    overrides: Sequence[str] = (),
) -> CN:
    """Build a config: defaults, then a preset, then a user YAML (which may `_BASE_` a preset), then
    detectron2-style `KEY VALUE` overrides. Raises ConfigError with a one-line message."""
    cfg = get_politeteacher_cfg()
    cfg.set_new_allowed(False)
    try:
        if preset:
            cfg.merge_from_file(str(preset_path(preset)))
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(f"config file {path} not found; pass an existing YAML file")
            resolved = _resolve_base(path)
            try:
                cfg.merge_from_file(str(resolved))
            finally:
                if resolved != path:
                    resolved.unlink()
        if overrides:
            if len(overrides) % 2:
                raise ConfigError(
                    f"overrides come in KEY VALUE pairs; got an odd number: {' '.join(overrides)}"
                )
            cfg.merge_from_list(list(overrides))
    except ConfigError:
        raise
    except (KeyError, AssertionError, ValueError, TypeError) as e:
        raise ConfigError(f"bad config value: {e}") from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        if "MODEL.DEVICE" in list(overrides)[::2]:
            raise ConfigError(f"MODEL.DEVICE {cfg.MODEL.DEVICE} was asked for but torch sees no GPU; use cpu")
        cfg.MODEL.DEVICE = "cpu"  # detectron2's default is cuda; a machine without a GPU runs on its CPU
    if cfg.MODEL.DEVICE.startswith("cuda:"):
        have = torch.cuda.device_count()
        index = cfg.MODEL.DEVICE[len("cuda:"):]
        if not index.isdigit() or int(index) >= have:
            raise ConfigError(
                f"MODEL.DEVICE {cfg.MODEL.DEVICE}: torch sees {have} GPU(s), cuda:0 to cuda:{have - 1}"
            )
    return cfg


def save_config(cfg: CN, output_dir: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write the fully resolved config into a run folder (atomically) and return its path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / name, cfg.dump())
