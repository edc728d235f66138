"""The tests' tiny CenterMask: the demo preset (R-18, GN) with 32-channel FPN and one-conv heads, on
128-px images, 2 images per step, from scratch (nothing frozen) on the CPU. Shared by the engine and
CLI tests."""

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
