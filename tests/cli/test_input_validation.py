"""Bad input found before anything is written: one `error:` line (plus the list of bad images)."""
import pytest

from politeteacher.data.synthetic import generate_dataset

from .helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_checks")
    json_path = generate_dataset(root, 6, seed=0, image_size=(64, 80), max_objects=2)
    return json_path, root / "train"


def test_split_into_an_unwritable_place_writes_nothing(data, tmp_path):
    json_path, images = data
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    common = ["split", "--train-json", json_path, "--train-images", images, "--percent", "50"]
    to_ut = run_cli(*common, "-o", "s.json", "--to-ut", "blocker/ut.txt", cwd=tmp_path)
    assert_one_line_error(to_ut, "cannot write blocker/ut.txt")
    out = run_cli(*common, "-o", "blocker/s.json", "--to-ut", "ut.txt", cwd=tmp_path)
    assert_one_line_error(out, "cannot write blocker/s.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
