"""`predict` for real use (issue #13): batches, mask PNGs, CSV rows, class filter, video, webcam.

The model is the demo-run-like checkpoint of test_predict_outputs (random tiny weights that keep 3
detections per image), so no training is needed."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from politeteacher.inference.progress import Progress
from .helpers import assert_usage_error, run_in_process
from .test_predict_outputs import demo_run, make_photos, predict_args  # noqa: F401


def _run(demo_run, *args):
    code, out, err = run_in_process(*predict_args(demo_run, *args))
    assert code == 0, out + err
    return out, err


def _mixed_photos(folder):
    """6 images of two sizes, interleaved, so that a batch of 4 mixes sizes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(6):
        shape = (128, 160, 3) if i % 2 else (96, 200, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_batch_sizes_1_and_4_give_the_same_results(demo_run, tmp_path):
    photos = _mixed_photos(tmp_path / "photos")
    results = {}
    for b in (1, 4):
        _run(demo_run, photos, "-o", tmp_path / f"b{b}", "--batch-size", b, "--no-overlays")
        results[b] = json.loads((tmp_path / f"b{b}" / "predictions.json").read_text())
    one, four = results[1], results[4]
    assert len(one) == len(four) and {r["image_id"] for r in one} == set(range(1, 7))
    from pycocotools import mask as mask_util

    differing = sum(int((mask_util.decode(a["segmentation"]) != mask_util.decode(b["segmentation"])).sum())
                    for a, b in zip(one, four))
    # Measured: boxes agree to 8e-6 px and scores closer (float rounding of batched convolutions), masks
    # pixel for pixel; the tolerances leave room for other CPUs' kernels.
    assert differing <= 0.001 * sum(a["segmentation"]["size"][0] * a["segmentation"]["size"][1] for a in one)
    for a, b in zip(one, four):
        assert (a["image_id"], a["category_id"], a["file_name"]) == (b["image_id"], b["category_id"], b["file_name"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["mask_score"] == pytest.approx(b["mask_score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)
        assert a["segmentation"]["size"] == b["segmentation"]["size"]
    assert not list((tmp_path / "b4").glob("*.png"))  # --no-overlays


def test_mask_pngs_and_csv_rows_match_the_json(demo_run, tmp_path):
    from pycocotools import mask as mask_util

    photos = make_photos(tmp_path / "photos", ["a.png", "b.png", "c.png"])
    out, _ = _run(demo_run, photos, "-o", tmp_path / "pred", "--save-masks", "--save-txt")
    pred = tmp_path / "pred"
    assert "masks/" in out and "predictions.csv" in out
    results = json.loads((pred / "predictions.json").read_text())
    categories = {c["id"]: c["name"] for c in json.loads((pred / "images.json").read_text())["categories"]}
    assert len(results) == 9
    assert sorted(p.name for p in (pred / "masks").iterdir()) == [f"{s}_{k}.png" for s in "abc" for k in (1, 2, 3)]
    for r in results:
        png = np.asarray(Image.open(pred / r["mask_file"]))
        assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
        assert np.array_equal(png > 0, mask_util.decode(r["segmentation"]).astype(bool)), r["mask_file"]
    with open(pred / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    for row, r in zip(rows, results):
        assert row["file"] == r["file_name"] and int(row["image_id"]) == r["image_id"]
        assert row["class"] == categories[r["category_id"]] and int(row["category_id"]) == r["category_id"]
        assert float(row["score"]) == r["score"] and float(row["mask_score"]) == r["mask_score"]
        assert [float(row[k]) for k in ("x", "y", "width", "height")] == r["bbox"]
        assert row["mask_file"] == r["mask_file"] and row["frame"] == ""
    # The streamed lines hold the same entries, mask files included.
    lines = [json.loads(l) for l in (pred / "predictions.jsonl").read_text().splitlines()]
    assert [p for l in lines for p in l["predictions"]] == results


def test_classes_keeps_the_named_classes_only(demo_run, tmp_path):
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png", "c.png", "d.png"])
    _run(demo_run, photos, "-o", tmp_path / "all", "--no-overlays")
    every = json.loads((tmp_path / "all" / "predictions.json").read_text())
    header = json.loads((tmp_path / "all" / "images.json").read_text())
    name = {c["id"]: c["name"] for c in header["categories"]}
    found = sorted({name[r["category_id"]] for r in every})
    assert len(found) >= 2, "the random model should detect several classes"
    kept = found[:2]
    _run(demo_run, photos, "-o", tmp_path / "some", "--no-overlays", "--classes", kept[0], "--classes", kept[1])
    _run(demo_run, photos, "-o", tmp_path / "comma", "--no-overlays", "--classes", ",".join(kept))
    expected = [r for r in every if name[r["category_id"]] in kept]
    assert json.loads((tmp_path / "some" / "predictions.json").read_text()) == expected
    assert json.loads((tmp_path / "comma" / "predictions.json").read_text()) == expected
    assert_usage_error(*run_in_process(*predict_args(demo_run, photos, "-o", tmp_path / "x", "--classes", "dog")),
                          "--classes: dog not among the model's classes", found[0])


def _video(path, frames=10, size=(160, 128)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def _frame_count(path):
    import cv2

    capture, n = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        n += 1
    return n, (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def test_a_video_gives_an_annotated_video_and_results_per_frame(demo_run, tmp_path):
    clip = _video(tmp_path / "clip.mp4")
    out, _ = _run(demo_run, clip, "-o", tmp_path / "pred", "--batch-size", "4", "--save-txt")
    pred = tmp_path / "pred"
    assert "10 image(s), " in out
    assert _frame_count(pred / "clip.mp4") == (10, (160, 128))
    lines = [json.loads(l) for l in (pred / "predictions.jsonl").read_text().splitlines()]
    assert [l["image"]["frame"] for l in lines] == list(range(10))
    assert {l["image"]["file_name"] for l in lines} == {str(clip)} and {l["overlay"] for l in lines} == {"clip.mp4"}
    detections = [len(l["predictions"]) for l in lines]
    assert f"{sum(detections)} detection(s)" in out and all(1 <= n <= 3 for n in detections)
    images = json.loads((pred / "images.json").read_text())["images"]
    assert [i["frame"] for i in images] == list(range(10)) and [i["id"] for i in images] == list(range(1, 11))
    with open(pred / "predictions.csv", newline="") as f:
        assert [int(r["frame"]) for r in csv.DictReader(f)] == [i for i, n in enumerate(detections) for _ in range(n)]
    assert not list(pred.glob("*.png"))


def test_webcam_that_does_not_open_is_one_error_line(demo_run, tmp_path):
    assert_usage_error(*run_in_process("predict", "--webcam", "9", "--weights", demo_run.weights,
                                          "-o", tmp_path / "cam"), "cannot open webcam 9")
    assert not (tmp_path / "cam").exists()


def test_progress_without_a_terminal_is_plain_lines(capsys):
    progress = Progress(5, bar=False, every_s=0.0)
    progress.update(2)
    progress.update(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("predict: 2/5 images, ") and lines[1].startswith("predict: 5/5 images, ")
    assert all(l.endswith("images/s") for l in lines)


def test_webcam_without_a_display_writes_frames(demo_run, tmp_path, monkeypatch):
    """Camera 0 played by a video file (OpenCV reads both alike); no display, so annotated frames are PNGs."""
    import cv2

    from politeteacher import predict
    from politeteacher.config import resolve_config
    from politeteacher.predict import predict_webcam

    clip = _video(tmp_path / "cam.mp4")
    monkeypatch.setattr(predict, "open_video", lambda source, name: cv2.VideoCapture(str(clip)))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cfg = resolve_config(None, str(demo_run.dir / "config.yaml"), [])
    report = predict_webcam(cfg, 0, str(demo_run.weights), tmp_path / "cam", threshold=0.0, max_frames=3)
    assert report.num_images == 3 and report.output_dir == tmp_path / "cam"
    names = [f"webcam0_{i:06d}.png" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "cam").glob("*.png")) == names
    lines = [json.loads(l) for l in (tmp_path / "cam" / "predictions.jsonl").read_text().splitlines()]
    assert [l["image"]["frame"] for l in lines] == [0, 1, 2] and [l["overlay"] for l in lines] == names
    assert (tmp_path / "cam" / "predictions.json").is_file()
