"""The warning when no pseudo-label passes for N logging periods."""
import logging
import os

from politeteacher.config import resolve_config
from politeteacher.data.datasets import register_all
from politeteacher.engine.run import prepare_training_cfg
from politeteacher.engine.launch import setup_worker
from politeteacher.engine.polite_teacher import PoliteTeacherTrainer
from politeteacher.engine.pseudo_monitor import NoPseudoLabelWarning


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _watch(logger_name="politeteacher.engine.pseudo_monitor"):
    handler = _Lines()
    logging.getLogger(logger_name).addHandler(handler)
    return handler


def test_warns_once_after_n_empty_logging_periods_and_again_after_a_new_streak():
    cfg = resolve_config("demo", None, ["SOLVER.LOG_PERIOD", "20", "SEMISUPERVISED.BOX_THRESHOLD", "0.7"])
    watch, handler = NoPseudoLabelWarning(cfg, periods=3), _watch()
    try:
        warned = []
        for labels in [5, 0, 0, 0, 0, 0, 2, 0, 0, 0]:  # one add per period, for short
            watch.add(labels)
            warned.append(watch.end_period())
    finally:
        logging.getLogger("politeteacher.engine.pseudo_monitor").removeHandler(handler)
    assert warned == [False, False, False, True, False, False, False, False, False, True]
    assert len(handler.lines) == 2 and "\n" not in handler.lines[0]
    assert "last 60 iterations" in handler.lines[0]
    assert "SEMISUPERVISED.BOX_THRESHOLD 0.7" in handler.lines[0] and "MODEL.FCOS.INFERENCE_TH_TRAIN" in handler.lines[0]
    assert not any(NoPseudoLabelWarning(cfg, periods=0).end_period() for _ in range(5))


def test_training_warns_when_no_pseudo_label_passes(tiny_cfg, tmp_path):
    # A box threshold of 1.0 lets no detection through.
    cfg = prepare_training_cfg(tiny_cfg(
        tmp_path / "run", "SOLVER.MAX_ITER", "3", "SEMISUPERVISED.BOX_THRESHOLD", "1.0",
        "SEMISUPERVISED.NO_PSEUDO_LABEL_WARN_PERIODS", "2", "DATASETS.SPLIT.PERCENT", "50.0",
        "SOLVER.IMS_PER_BATCH_UNLABELED", "2", val=False))
    register_all(cfg)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_worker(cfg)
    trainer = PoliteTeacherTrainer(cfg)
    trainer.resume_or_load(resume=False)
    handler = _watch()
    try:
        trainer.train(0, 3)
    finally:
        logging.getLogger("politeteacher.engine.pseudo_monitor").removeHandler(handler)
    (line,) = handler.lines  # after the 2nd logging period (LOG_PERIOD 1), once
    assert "no pseudo-label in the last 2 iterations" in line and "SEMISUPERVISED.BOX_THRESHOLD 1" in line
