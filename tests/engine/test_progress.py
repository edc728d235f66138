"""Progress a person can follow: the periodic line and the terminal bar."""
import logging
from types import SimpleNamespace

from detectron2.utils.events import EventStorage

from politeteacher.engine.progress import ProgressBar, ProgressPrinter


def test_progress_line_has_iteration_of_max_eta_losses_lr(caplog):
    printer = ProgressPrinter(max_iter=300, window_size=2)
    with caplog.at_level(logging.INFO, logger="politeteacher.train"), EventStorage(0) as storage:
        for it in range(40):
            storage.iter = it
            storage.put_scalars(total_loss=2.0, loss_mask=0.5, lr=0.01, time=0.25)
        printer.write()
    line = caplog.records[-1].getMessage()
    assert line.startswith("iter 40/300 (13%)  eta 0:01:05")
    assert "total_loss 2  loss_mask 0.5  lr 0.01  0.25 s/it" in line


def test_bar_counts_iterations_and_shows_loss(capsys):
    with EventStorage(0) as storage:
        bar = ProgressBar(enabled=True)
        bar.trainer = SimpleNamespace(max_iter=4, start_iter=1, storage=storage)
        bar.before_train()
        for it in range(1, 4):
            storage.iter = it
            storage.put_scalars(total_loss=1.5, lr=0.02)
            bar.after_step()
        bar.after_train()
    err = capsys.readouterr().err
    assert "4/4" in err and "loss=1.5" in err and "lr=0.02" in err
    assert ProgressBar().enabled is False  # not a terminal under pytest: no bar in logs
