"""`politeteacher demo`: the whole workflow on the generated dataset, shrunk to a few iterations."""
import json
import math

import pytest
import torch

from tiny import TINY_MODEL

from .helpers import assert_one_line_error, run_cli

# The demo's own presets with a thin model, small images and 3 iterations per stage.
QUICK = [*TINY_MODEL, "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH_UNLABELED", "2"]


@pytest.mark.slow
def test_demo_runs_the_whole_workflow(tmp_path):
    result = run_cli("demo", "--output-dir", "demo", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "demo"
    split = json.loads((out / "split_10pct_seed1.json").read_text())
    assert split["num_labeled"] == 20 and split["num_candidates"] == 200
    for run in ("baseline", "polite_teacher"):
        assert (out / run / "model_final.pth").is_file() and (out / run / "config.yaml").is_file()
        assert (out / run / "curves.png").is_file()
    assert "modelTeacher." in next(iter(__import__("torch").load(out / "polite_teacher" / "model_final.pth")["model"]))
    table = [l.split() for l in result.stdout.splitlines() if l.startswith(("baseline", "polite_teacher"))]
    assert [row[0] for row in table] == ["baseline", "polite_teacher"]
    for row in table:  # bbox and segm AP: numbers (NaN when a 3-iteration model detects nothing)
        assert all(math.isnan(float(v)) or 0 <= float(v) <= 100 for v in row[-2:])
    assert len(list((out / "predictions").glob("*.png"))) == 4
    assert (out / "predictions" / "predictions.json").is_file()
    steps = [l.split("]: ", 1)[1][:3] for l in result.stdout.splitlines() if "politeteacher.demo]: " in l]
    assert steps == [f"{k}/6" for k in range(1, 7)], result.stdout  # every step says where the demo is
    assert "warning" not in result.stdout + result.stderr  # nothing to warn about in the shipped presets

    again = run_cli("demo", "--output-dir", "demo", *QUICK, cwd=tmp_path)
    assert_one_line_error(again, "not empty", "--force")


@pytest.mark.slow
def test_polite_teacher_starts_from_the_baseline_at_k_so_both_train_t_iterations(tmp_path, monkeypatch):
    """T = the baseline's SOLVER.MAX_ITER, T - K = the second stage's: Polite Teacher starts from the
    baseline's checkpoint at K, not from its end."""
    import yaml

    from politeteacher import demo

    resolve = demo.resolve_config

    def shorter_second_stage(preset=None, config_file=None, overrides=()):
        extra = ["SOLVER.MAX_ITER", "2"] if preset == demo.SSL_PRESET else []
        return resolve(preset, config_file, [*overrides, *extra])

    monkeypatch.setattr(demo, "resolve_config", shorter_second_stage)
    monkeypatch.chdir(tmp_path)
    report = demo.run_demo(tmp_path / "demo", overrides=[*TINY_MODEL, "SOLVER.MAX_ITER", "4",
                                                          "SOLVER.IMS_PER_BATCH_UNLABELED", "2"])
    ssl_cfg = yaml.safe_load((tmp_path / "demo" / "polite_teacher" / "config.yaml").read_text())
    assert ssl_cfg["MODEL"]["WEIGHTS"] == str(tmp_path / "demo" / "baseline" / "model_0000001.pth")
    assert ssl_cfg["SOLVER"]["MAX_ITER"] == 2
    assert torch.load(report.ssl_weights)["iteration"] == 1
    assert torch.load(report.baseline_weights)["iteration"] == 3
    assert set(report.ap) == {"baseline", "polite_teacher (teacher)"}
