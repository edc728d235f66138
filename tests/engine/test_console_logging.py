"""The console shows the tool's own lines; the libraries' output goes to log.txt (or also to the
console with --verbose); known warnings are said once, in the tool's words."""
import logging

import pytest

from politeteacher.engine.launch import close_log_files, prints_to_log, set_verbose, setup_logging

STEPS = "SOLVER.STEPS contains values larger than SOLVER.MAX_ITER. These values will be ignored."
CATEGORY_IDS = "\nCategory ids in annotations are not in [1, #categories]! We'll apply a mapping for you.\n"


@pytest.fixture
def console(tmp_path, capsys):
    """(capsys, log.txt) of a logging setup into tmp_path."""
    setup_logging(str(tmp_path))
    yield capsys, tmp_path / "log.txt"
    close_log_files()
    set_verbose(False)


def _log(console_):
    logging.getLogger("politeteacher.engine.run").info("Run folder: /x")
    logging.getLogger("detectron2.data.common").info("Serializing 3 elements to byte tensors")
    logging.getLogger("fvcore.common.checkpoint").info("Saving checkpoint to /x/model_final.pth")
    for _ in range(3):  # e.g. one per registration and worker
        logging.getLogger("detectron2.solver.build").warning(STEPS)
        logging.getLogger("detectron2.data.datasets.coco").warning(CATEGORY_IDS)
    logging.getLogger("politeteacher.evaluation.evaluate").info("csv table", extra={"log_only": True})
    with prints_to_log():
        print("Loading and preparing results...")
        logging.getLogger("politeteacher.train").info("iter 0 (1/4, 25%)")  # the console still reaches stdout
        print(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000")
    for h in logging.getLogger("politeteacher").handlers:
        h.flush()
    capsys, log = console_
    return capsys.readouterr().out.splitlines(), log.read_text()


def test_console_has_the_tools_lines_and_log_txt_everything(console):
    lines, log = _log(console)
    assert [l.split("]: ", 1)[1] for l in lines] == [
        "Run folder: /x",
        "warning: SOLVER.STEPS has steps beyond SOLVER.MAX_ITER: the learning rate is not decayed at those",
        "warning: the category ids of the JSON are not 1..N: classes are numbered in the order of its categories "
        "(predictions and eval results use the JSON's ids)",
        "iter 0 (1/4, 25%)",
    ]
    for text in ("Serializing 3 elements", "Saving checkpoint", "csv table", "Loading and preparing results",
                 "Average Precision  (AP)", STEPS):
        assert text in log
    assert log.count(STEPS) == 3  # the log keeps the library's own words, each time


def test_verbose_shows_the_libraries_on_the_console_too(console):
    set_verbose(True)
    lines, _ = _log(console)
    text = "\n".join(lines)
    assert "detectron2.data.common]: Serializing 3 elements" in text and "Saving checkpoint" in text
    assert "pycocotools]: Loading and preparing results..." in text
    assert text.count(STEPS) == 3


def test_known_warnings_are_said_again_by_the_next_run(console, tmp_path):
    _log(console)
    close_log_files()
    setup_logging(str(tmp_path / "again"))
    logging.getLogger("detectron2.solver.build").warning(STEPS)
    assert console[0].readouterr().out.count("SOLVER.STEPS has steps beyond") == 1
