"""`compare` on fabricated run folders, and the configs of a `--sweep` grid."""
import json

import pytest

from politeteacher.evaluation.compare import compare_runs, draw_ap_curves, format_comparison
from politeteacher.engine.sweep import parse_sweep, run_name, sweep_configs
from politeteacher.errors import PoliteTeacherError


def _run(folder, threshold, teacher_ap, pseudo=True):
    """A Polite Teacher run folder: metrics.json with AP at iterations 9 and 19, config.yaml, eval_results.json."""
    folder.mkdir(parents=True)
    records = [{"iteration": i, "total_loss": 1.0} for i in range(20)]
    for i, (t, s) in zip((9, 19), teacher_ap):
        records[i].update({"teacher/segm/AP": t, "student/segm/AP": s, "teacher/bbox/AP": t + 1,
                           "student/bbox/AP": s + 1})
    if pseudo:
        records[4].update({"pseudo/boxes_per_image": 2.0, "pseudo/valid_mask_fraction": 0.5,
                           "pseudo/box_precision": None})  # nothing measured at this one
        records[14].update({"pseudo/boxes_per_image": 4.0, "pseudo/valid_mask_fraction": 1.0,
                            "pseudo/box_precision": 0.75})
    (folder / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "config.yaml").write_text(
        f"OUTPUT_DIR: {folder}\nSEMISUPERVISED:\n  BOX_THRESHOLD: {threshold}\n  EMA_KEEP_RATE: 0.9996\n")
    final = {"teacher": {"segm": {"AP": teacher_ap[-1][0]}}, "student": {"segm": {"AP": teacher_ap[-1][1]}}}
    (folder / "eval_results.json").write_text(json.dumps({"results": final}))
    return folder


def test_compare_reports_best_and_final_ap_pseudo_labels_and_differing_keys(tmp_path):
    a = _run(tmp_path / "a", 0.5, [(12.0, 11.0), (10.0, 13.0)])
    b = _run(tmp_path / "b", 0.7, [(8.0, 7.0), (14.0, 9.0)], pseudo=False)
    c = compare_runs([a, b])
    assert [r.name for r in c.runs] == ["a", "b"]
    assert c.runs[0].ap[("teacher", "segm")] == (12.0, 9, 10.0)  # best, at iteration, final
    assert c.runs[0].ap[("student", "segm")] == (13.0, 19, 13.0)
    assert c.runs[1].ap[("teacher", "bbox")] == (15.0, 19, 15.0)
    assert c.runs[0].pseudo == {"pseudo/boxes_per_image": 3.0, "pseudo/valid_mask_fraction": 0.75,
                                "pseudo/box_precision": 0.75}
    assert c.runs[1].pseudo == {}
    assert c.differing == {"SEMISUPERVISED.BOX_THRESHOLD": [0.5, 0.7]}  # OUTPUT_DIR left out
    text = format_comparison(c).splitlines()
    assert text[1].split() == ["run", "teacher", "segm", "student", "segm", "teacher", "bbox", "student", "bbox"]
    assert text[2].split() == ["a", "12.00", "@9", "/", "10.00", "13.00", "@19", "/", "13.00",
                               "13.00", "@9", "/", "11.00", "14.00", "@19", "/", "14.00"]
    row_b = next(l for l in text if l.startswith("b ") and "-" in l)
    assert row_b.split() == ["b", "-", "-", "-"]  # pseudo-labels never measured (columns: those a run has)
    assert text[-1].split() == ["SEMISUPERVISED.BOX_THRESHOLD", "0.5", "0.7"]
    fig = draw_ap_curves(c)
    assert [ax.get_title() for ax in fig.axes] == ["segm AP", "bbox AP"]
    assert [l.get_label() for l in fig.axes[0].get_lines()] == [
        "a (teacher)", "a (student)", "b (teacher)", "b (student)"]


def test_compare_a_baseline_without_metrics_uses_its_eval_results(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "eval_results.json").write_text(json.dumps({"results": {"custom_val": {"segm": {"AP": 5.5}}}}))
    c = compare_runs([base, _run(tmp_path / "ssl", 0.5, [(6.0, 6.0), (7.0, 7.0)])])
    assert c.runs[0].ap == {("model", "segm"): (5.5, -1, 5.5)}
    assert "5.50 / 5.50" in format_comparison(c)


def test_a_sweep_folder_stands_for_its_runs(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep / "BOX_THRESHOLD=0.7", 0.7, [(1.0, 1.0), (2.0, 2.0)])
    _run(sweep / "BOX_THRESHOLD=0.5", 0.5, [(1.0, 1.0), (3.0, 3.0)])
    (sweep / "notes").mkdir()
    c = compare_runs([sweep])
    assert [r.name for r in c.runs] == ["BOX_THRESHOLD=0.5", "BOX_THRESHOLD=0.7"]
    assert c.differing == {"SEMISUPERVISED.BOX_THRESHOLD": [0.5, 0.7]}


def test_compare_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(PoliteTeacherError, match="no metrics.json or eval_results.json"):
        compare_runs([tmp_path])
    with pytest.raises(PoliteTeacherError, match="not found"):
        compare_runs([tmp_path / "missing"])


def test_sweep_grid_makes_one_config_and_folder_per_combination(tiny_cfg, tmp_path):
    cfg = tiny_cfg(tmp_path / "sweep", "SEMISUPERVISED.BOX_THRESHOLD", "0.9")
    runs = sweep_configs(cfg, ["SEMISUPERVISED.BOX_THRESHOLD=0.5,0.7", "SEMISUPERVISED.UNSUP_LOSS_WEIGHT=1,4"])
    assert [folder.name for folder, _ in runs] == [
        "BOX_THRESHOLD=0.5,UNSUP_LOSS_WEIGHT=1", "BOX_THRESHOLD=0.5,UNSUP_LOSS_WEIGHT=4",
        "BOX_THRESHOLD=0.7,UNSUP_LOSS_WEIGHT=1", "BOX_THRESHOLD=0.7,UNSUP_LOSS_WEIGHT=4"]
    values = [(c.SEMISUPERVISED.BOX_THRESHOLD, c.SEMISUPERVISED.UNSUP_LOSS_WEIGHT) for _, c in runs]
    assert values == [(0.5, 1.0), (0.5, 4.0), (0.7, 1.0), (0.7, 4.0)]
    assert all(c.OUTPUT_DIR == str(folder) and folder.parent == tmp_path / "sweep" for folder, c in runs)
    assert cfg.SEMISUPERVISED.BOX_THRESHOLD == 0.9  # the base config is left as it was


@pytest.mark.parametrize("specs, message", [
    (["SEMISUPERVISED.BOX_THRESHOLD=0.5"], "two values or more"),
    (["BOX_THRESHOLD 0.5,0.6"], "is not KEY=V1,V2"),
    (["SEMISUPERVISED.BOX_THRESHOLD=0.5,0.5"], "distinct"),
    (["A.B=1,2", "A.C=1,2", "A.D=1,2"], "one or two keys"),
    (["A.B=1,2", "A.B=3"], "twice"),
])
def test_bad_sweeps_are_one_line_errors(specs, message):
    with pytest.raises(PoliteTeacherError, match=message):
        parse_sweep(specs)


def test_sweep_values_the_config_refuses_fail_before_any_run(tiny_cfg, tmp_path):
    with pytest.raises(PoliteTeacherError, match="--sweep: bad config value"):
        sweep_configs(tiny_cfg(tmp_path), ["SEMISUPERVISED.NO_SUCH_KEY=1,2"])


def test_run_names_hold_tuples_and_tell_apart_keys_with_the_same_last_part():
    assert parse_sweep(["INPUT.MIN_SIZE_TRAIN=(480,),(640,)"]) == [("INPUT.MIN_SIZE_TRAIN", ["(480,)", "(640,)"])]
    assert run_name([("A.X", "1"), ("B.X", "2")]) == "A.X=1,B.X=2"
    assert run_name([("A.X", "a/b")]) == "X=a_b"
