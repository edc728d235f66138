"""Progress a person can follow (the periodic line and the terminal bar) and metrics.json."""
import io
import json
import logging
from types import SimpleNamespace

from detectron2.utils.events import EventStorage

from politeteacher.engine.hooks import ProgressBar
from politeteacher.engine.progress import MetricsWriter, ProgressPrinter, trim_metrics


def test_progress_line_has_iteration_of_max_eta_losses_lr(caplog):
    printer = ProgressPrinter(max_iter=300, window_size=2)
    with caplog.at_level(logging.INFO, logger="politeteacher.train"), EventStorage(0) as storage:
        for it in range(40):
            storage.iter = it
            storage.put_scalars(total_loss=2.0, loss_mask=0.5, lr=0.01, time=0.25)
        printer.write()
    line = caplog.records[-1].getMessage()
    # the iteration as metrics.json numbers it (0-based), then the steps done
    assert line.startswith("iter 39 (40/300, 13%)  eta 0:01:05")
    assert "total_loss 2  loss_mask 0.5  lr 0.01  0.25 s/it" in line



def test_a_second_line_for_the_same_iteration_is_skipped(caplog):
    # Ctrl-C inside the periodic writer after this printer wrote: detectron2 writes again in
    # after_train, at the same iteration (its ETA divided by zero there, before the timer's first value).
    printer = ProgressPrinter(max_iter=300, window_size=1)
    with caplog.at_level(logging.INFO, logger="politeteacher.train"), EventStorage(0) as storage:
        storage.put_scalars(total_loss=2.0, lr=0.01)
        printer.write()
        storage.iter = 1
        storage.put_scalars(total_loss=1.0, lr=0.01)
        printer.write()
        printer.write()
    assert [r.getMessage().split()[1] for r in caplog.records] == ["0", "1"]

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
    assert ProgressBar(file=io.StringIO()).enabled is False  # not a terminal: no bar in logs


def _strict(line):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_metrics_are_strict_json_and_the_file_is_opened_at_the_first_write(tmp_path):
    path = tmp_path / "metrics.json"
    writer = MetricsWriter(str(path), window_size=1)
    assert not path.exists()  # a resumed run trims it before anything is appended
    with EventStorage(0) as storage:
        storage.put_scalars(total_loss=1.5, smoothing_hint=False)
        storage.put_scalar("segm/APl", float("nan"), smoothing_hint=False)
        storage.put_scalar("bbox/APl", float("inf"), smoothing_hint=False)
        writer.write()
        storage.iter = 1
        storage.put_scalars(total_loss=1.25, smoothing_hint=False)
        writer.write()
    writer.close()
    records = [_strict(line) for line in path.read_text().splitlines()]
    assert records == [{"iteration": 0, "total_loss": 1.5, "segm/APl": None, "bbox/APl": None},
                       {"iteration": 1, "total_loss": 1.25}]


def test_trim_keeps_the_records_up_to_the_resumed_checkpoint(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [json.dumps({"iteration": i, "total_loss": 1.0 / (i + 1)}) for i in range(6)]
    lines[3] = '{"iteration": 3, "segm/AP": NaN, "total_loss": 0.25}'  # what detectron2 wrote
    path.write_text("\n".join(lines) + '\n{"iteration": 6, "total_lo')  # cut short by a kill
    trim_metrics(path, 3)
    records = [_strict(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3] and records[3]["segm/AP"] is None
    trim_metrics(path, -1)  # --resume of a run without a checkpoint starts at iteration 0
    assert path.read_text() == ""


def test_ssl_line_leaves_out_hidden_losses_and_shows_pseudo_labels(caplog):
    printer = ProgressPrinter(max_iter=10, window_size=1, hidden=["loss_fcos_loc_pseudo"])
    with caplog.at_level(logging.INFO, logger="politeteacher.train"), EventStorage(0) as storage:
        storage.put_scalars(total_loss=2.0, loss_fcos_loc_pseudo=0.0, loss_mask_pseudo=0.25, lr=0.01)
        storage.put_scalars(**{"pseudo/boxes_per_image": 3.5, "pseudo/valid_mask_fraction": float("nan")},
                            smoothing_hint=False)
        printer.write()
    line = caplog.records[-1].getMessage()
    assert "loss_fcos_loc_pseudo" not in line and "loss_mask_pseudo 0.25" in line
    assert "pseudo/img 3.5  valid_masks -  lr 0.01" in line  # NaN: not measured


def _write_last_losses_then_final_eval(writer, again: bool = False) -> None:
    """The last iteration (3) as a run writes it: its losses, then the evaluation after training recorded
    at the same iteration; `again`: one more write with nothing new."""
    with EventStorage(0) as storage:
        storage.iter = 3
        storage.put_scalars(total_loss=1.0, smoothing_hint=False)
        writer.write()
        storage.put_scalars(**{"segm/AP": 12.5}, smoothing_hint=False)
        writer.write()
        if again:
            writer.write()  # nothing new: nothing written
    writer.close()


def test_final_evaluation_is_written_at_the_last_iteration_after_its_losses(tmp_path):
    # The losses of the last iteration are written at its end; the evaluation after training is
    # recorded at the same iteration and must still reach metrics.json.
    path = tmp_path / "metrics.json"
    _write_last_losses_then_final_eval(MetricsWriter(str(path), window_size=1), again=True)
    assert [_strict(l) for l in path.read_text().splitlines()] == [
        {"iteration": 3, "total_loss": 1.0}, {"iteration": 3, "segm/AP": 12.5}]


def test_bar_is_closed_after_the_last_step_before_the_final_evaluation():
    with EventStorage(0) as storage:
        bar = ProgressBar(enabled=True)
        bar.trainer = SimpleNamespace(max_iter=2, start_iter=0, storage=storage)
        bar.before_train()
        bar.after_step()
        assert bar._bar is not None
        storage.iter = 1
        bar.after_step()
        assert bar._bar is None  # closed: the final evaluation (after_train) has its own progress
        bar.after_train()


def test_tensorboard_has_the_final_evaluation_at_the_last_iteration_too(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from politeteacher.engine.progress import TensorboardWriter

    _write_last_losses_then_final_eval(TensorboardWriter(str(tmp_path), window_size=1))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("segm/AP")] == [(3, 12.5)]
    assert [(e.step, e.value) for e in events.Scalars("total_loss")] == [(3, 1.0)]
