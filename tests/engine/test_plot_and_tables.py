"""Curves from metrics.json and the AP tables printed by `eval`."""
import json
import math

import pytest
from PIL import Image

from politeteacher.engine.evaluate import format_results, write_results
from politeteacher.engine.plot import curves, plot_run, read_metrics
from politeteacher.errors import PoliteTeacherError


def _metrics(path, resumed=False):
    lines = [
        {"iteration": 0, "total_loss": 4.0, "loss_mask": 0.7, "lr": 0.01},
        {"iteration": 1, "total_loss": 3.0, "loss_mask": 0.6, "segm/AP": 1.0, "bbox/AP": 2.0, "bbox/AP-cat": 3.0},
        {"iteration": 2, "total_loss": 2.0, "loss_mask": 0.5},
    ]
    if resumed:  # a resumed run writes iteration 2 again, then goes on
        lines += [{"iteration": 2, "total_loss": 1.5}, {"iteration": 3, "total_loss": 1.0, "segm/AP": 5.0}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"iteration\": 4, \"tot")  # cut by a kill
    return path


def test_curves_pick_losses_and_summary_ap(tmp_path):
    losses, aps = curves(read_metrics(_metrics(tmp_path / "metrics.json", resumed=True)))
    assert list(losses) == ["total_loss", "loss_mask"]
    assert losses["total_loss"] == [(0, 4.0), (1, 3.0), (2, 1.5), (3, 1.0)]
    assert set(aps) == {"segm/AP", "bbox/AP"}  # not per-category APs
    assert aps["segm/AP"] == [(1, 1.0), (3, 5.0)]


def test_plot_run_writes_png(tmp_path):
    _metrics(tmp_path / "metrics.json")
    out = plot_run(tmp_path)
    assert out == tmp_path / "curves.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 600
    assert not list(tmp_path.glob("*.tmp"))


def test_plot_run_without_metrics_is_one_line(tmp_path):
    with pytest.raises(PoliteTeacherError, match="no metrics.json"):
        plot_run(tmp_path)


def test_format_results_and_json_agree(tmp_path):
    res = {"val": {"bbox": {"AP": 12.34567, "AP50": 30.0, "AP75": 10.0, "APs": math.nan, "APm": 1.0,
                            "APl": 2.0, "AP-circle": 5.5, "AP-star": math.nan},
                   "segm": {"AP": 11.0, "AP50": 29.0, "AP75": 9.0, "APs": math.nan, "APm": 0.5,
                            "APl": 1.5, "AP-circle": 4.25, "AP-star": math.nan}}}
    text = format_results(res, per_category=True)
    assert "12.346" in text and "4.250" in text
    bbox_row = next(l for l in text.splitlines() if l.strip().startswith("bbox"))
    assert bbox_row.split()[1:] == ["12.346", "30.000", "10.000", "-", "1.000", "2.000"]
    star = next(l for l in text.splitlines() if l.strip().startswith("star"))
    assert star.split()[1:] == ["-", "-"]
    saved = json.loads(write_results(tmp_path / "r.json", res, weights="w.pth").read_text())
    assert saved["results"]["val"]["bbox"]["APs"] is None  # strict JSON: NaN becomes null
    assert saved["weights"] == "w.pth"
