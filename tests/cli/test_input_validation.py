"""Bad input found before anything is written: one `error:` line (plus the list of bad images)."""
import pytest

from politeteacher.data.synthetic import generate_dataset

from .helpers import assert_one_line_error, run_cli

TINY = ["--preset", "demo", "--device", "cpu", "--percent", "50", "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "1"]


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


def _with_a_truncated_image(images, folder):
    """A copy of the image folder ``images`` in ``folder`` whose 000002.jpg is truncated."""
    folder.mkdir()
    for image in images.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    truncated = folder / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    return truncated


def test_bad_images_stop_training_before_the_run_folder_is_made(data, tmp_path):
    json_path, images = data
    bad = tmp_path / "images"
    truncated = _with_a_truncated_image(images, bad)
    run = tmp_path / "run"
    result = run_cli("train-baseline", *TINY, "--train-json", json_path, "--train-images", bad,
                     "--weights", "none", "--output-dir", run)
    assert_one_line_error(result, "1 of the 6 images cannot be used", "--skip-bad-images")
    assert f"    {truncated}: cannot be decoded (OSError: image file is truncated" in result.stderr
    assert not run.exists()


def test_weights_pkl_that_is_no_model_zoo_pickle(data, tmp_path):
    json_path, images = data
    pkl = tmp_path / "x.pkl"
    pkl.write_bytes(b"\x00" * 100)
    run = tmp_path / "run"
    result = run_cli("train-baseline", *TINY, "--train-json", json_path, "--train-images", images,
                     "--weights", pkl, "--output-dir", run)
    assert_one_line_error(result, f"weights file {pkl} is not a detectron2 / Caffe2 model-zoo pickle")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run.exists()


def test_eval_checks_the_validation_images_first(data, tmp_path):
    json_path, images = data
    bad = tmp_path / "images"
    truncated = _with_a_truncated_image(images, bad)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"never read: the images are checked first")
    result = run_cli("eval", "--preset", "demo", "--device", "cpu", "--weights", weights, "--val-json", json_path,
                     "--val-images", bad, "--output-dir", tmp_path / "eval")
    assert_one_line_error(result, "1 of the 6 validation images cannot be used")
    assert f"    {truncated}: cannot be decoded (OSError: image file is truncated" in result.stderr


@pytest.mark.parametrize("command", ["train-baseline", "train-ssl"])
def test_missing_weights_stop_training_before_the_run_folder_is_made(data, tmp_path, command):
    json_path, images = data
    missing = tmp_path / "missing.pth"
    run = tmp_path / "run"
    result = run_cli(command, *TINY, "--train-json", json_path, "--train-images", images,
                     "--weights", missing, "--output-dir", run)
    assert_one_line_error(result, f"weights file {missing} not found; pass an existing .pth/.pkl checkpoint")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run.exists()
