"""What the tests share: the tiny CenterMask (the demo preset, R-18 with GN, with a 32-channel FPN and
one-conv heads, on 128-px images, 2 images per step, from scratch with nothing frozen, on the CPU),
the settings of a tiny training run, and the real COCO excerpt some tests use."""
from pathlib import Path

import pytest

TINY_MODEL = [
    "MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.FCOS.NUM_CLS_CONVS", "1", "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "MODEL.ROI_MASK_HEAD.NUM_CONV", "1", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
    "MODEL.ROI_MASKIOU_HEAD.NUM_CONV", "1", "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", "32",
    "MODEL.ROI_MASKIOU_HEAD.FC_DIM", "64",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160",
    "SOLVER.IMS_PER_BATCH", "2",
]
# A tiny training run: no loader processes, a 2-iteration warm-up, a record every iteration.
TINY_TRAINING = ["DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "2", "SOLVER.LOG_PERIOD", "1"]

# 160 real COCO 2017 images with official annotations, in detectron2's layout (../shared beside the repository).
COCO_TINY = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco_tiny").resolve()
needs_coco_tiny = pytest.mark.skipif(not (COCO_TINY / "coco" / "annotations").is_dir(),
                                     reason="needs ../shared/data/coco_tiny")
