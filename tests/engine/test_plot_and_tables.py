"""Curves from metrics.json and the AP tables printed by `eval`."""
import json
import math

import pytest
from PIL import Image

from politeteacher.evaluation.evaluate import format_results, write_results
from politeteacher.evaluation.plot import curves, plot_run, read_metrics
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


def _panel(fig, title):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def _labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_curves_from_one_point_draw_every_series_with_a_marker():
    from politeteacher.evaluation.plot import draw_curves

    fig = draw_curves({"run": [{"iteration": 0, "total_loss": 2.0, "loss_mask": 0.5, "lr": 0.01}]})
    assert [ax.get_title() for ax in fig.axes] == ["supervised losses", "learning rate"]
    losses = _panel(fig, "supervised losses")
    assert _labels(losses) == ["total_loss", "loss_mask"]
    assert all(line.get_marker() == "o" for line in losses.get_lines())  # one point: no line without it
    assert losses.get_yscale() == "log"


def test_panels_of_a_polite_teacher_run_with_zero_losses_and_unmeasured_statistics():
    from politeteacher.evaluation.plot import draw_curves

    records = [{"iteration": i, "total_loss": 3.0 - i, "loss_mask": 0.0 if i == 0 else 0.5,
                "loss_fcos_cls_pseudo": 0.1 * i, "loss_fcos_loc_pseudo": 0.0, "lr": 0.01,
                "pseudo/boxes_per_image": 2.0 + i, "pseudo/valid_mask_fraction": 0.5,
                "pseudo/box_precision": None if i == 0 else 0.8,  # NaN in JSON-safe form: nothing measured
                "teacher/segm/AP": 10.0 + i, "student/segm/AP": 9.0 + i, "teacher/segm/AP50": 20.0}
               for i in range(3)]
    records.append({"iteration": 3, "pseudo/mask_recall": float("nan")})
    fig = draw_curves({"ssl": records})
    assert [ax.get_title() for ax in fig.axes] == [
        "supervised losses", "pseudo-label losses", "learning rate", "AP", "pseudo-labels per image",
        "pseudo-label quality"]
    supervised = _panel(fig, "supervised losses")
    assert supervised.get_yscale() == "linear"  # a 0 among the values: no log scale
    assert _labels(_panel(fig, "pseudo-label losses")) == ["loss_fcos_cls_pseudo"]  # 0 throughout: left out
    assert _labels(_panel(fig, "AP")) == ["student/segm/AP", "teacher/segm/AP"]  # both models, AP only
    quality = _panel(fig, "pseudo-label quality")
    assert _labels(quality) == ["pseudo/box_precision", "pseudo/valid_mask_fraction"]
    precision = quality.get_lines()[0]
    assert list(precision.get_xdata()) == [1, 2]  # the unmeasured iteration draws nothing
    colours = [line.get_color() for line in supervised.get_lines()]
    assert len(set(colours)) == len(colours)
    legend = supervised.get_legend()
    assert legend.get_bbox_to_anchor().x0 > supervised.get_window_extent().x1 - 1  # right of the data


def test_plot_runs_overlays_several_runs_a_colour_each(tmp_path):
    from politeteacher.evaluation.plot import draw_curves, plot_runs

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, scale in ((a, 1.0), (b, 2.0)):
        folder.mkdir()
        folder.joinpath("metrics.json").write_text("".join(
            json.dumps({"iteration": i, "total_loss": scale / (i + 1), "lr": 0.01, "segm/AP": scale * i}) + "\n"
            for i in range(3)))
    out = plot_runs([a, b], tmp_path / "out" / "both.png")
    assert out == tmp_path / "out" / "both.png" and out.read_bytes()[:4] == b"\x89PNG"
    fig = draw_curves({"a": read_metrics(a / "metrics.json"), "b": read_metrics(b / "metrics.json")})
    losses = _panel(fig, "supervised losses")
    assert _labels(losses) == ["a: total_loss", "b: total_loss"]
    assert losses.get_lines()[0].get_color() != losses.get_lines()[1].get_color()
    assert list(losses.get_lines()[1].get_ydata()) == [2.0, 1.0, 2.0 / 3]


def test_zero_weighted_pseudo_losses_of_a_run_are_not_drawn(tmp_path):
    from politeteacher.evaluation.plot import zero_weighted_losses

    (tmp_path / "config.yaml").write_text(
        "SEMISUPERVISED:\n  UNSUP_LOSS_WEIGHT: 2.0\n  PSEUDO_LOC_WEIGHT: 0.0\n  PSEUDO_CTR_WEIGHT: 1.0\n"
        "  PSEUDO_MASK_LOSSES: true\n  PSEUDO_MASKIOU_LOSS: false\n")
    assert sorted(zero_weighted_losses(tmp_path)) == ["loss_fcos_loc_pseudo", "loss_maskiou_pseudo"]


def test_eval_plots_from_cocoeval_precision(tmp_path):
    import numpy as np

    from politeteacher.evaluation.plot import class_ap, draw_ap_per_class, draw_pr_curves, plot_eval

    # [IoU 10, recall 101, class 2, area 4, max dets 3]; class 1 has no ground truth (-1)
    precision = np.full((10, 101, 2, 4, 3), -1.0)
    precision[:, :, 0, 0, -1] = 0.5
    precision[:5, :51, 0, 0, -1] = 1.0  # half the IoU thresholds reach recall 0.5 at precision 1
    ap = class_ap(precision)
    expected = 100 * (0.5 * (51 * 1.0 + 50 * 0.5) / 101 + 0.5 * 0.5)
    assert ap[0] == pytest.approx(expected) and math.isnan(ap[1])
    bars = draw_ap_per_class({"bbox": precision, "segm": precision}, ["circle", "star"])
    assert [t.get_text() for t in bars.axes[0].get_yticklabels()] == ["circle", "star"]
    assert [round(p.get_width(), 6) for p in bars.axes[0].patches] == [round(expected, 6), 0.0] * 2
    pr = draw_pr_curves({"segm": precision})
    assert _labels(pr.axes[0]) == ["IoU 0.50", "IoU 0.75", "IoU 0.50:0.95"]
    assert list(pr.axes[0].get_lines()[0].get_ydata()[[0, 50, 51, 100]]) == [1.0, 1.0, 0.5, 0.5]
    written = plot_eval({"segm": precision}, ["circle", "star"], tmp_path / "ds")
    assert [p.name for p in written] == ["ap_per_class.png", "pr_curves.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
