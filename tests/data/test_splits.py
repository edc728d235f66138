import json
from pathlib import Path

import pytest

from politeteacher.data.checks import setup_datasets
from politeteacher.data.datasets import register_all
from politeteacher.data.splits import (
    Split,
    candidate_ids,
    check_split,
    export_ut,
    import_ut,
    labeled_and_unlabeled,
    make_split,
)
from politeteacher.data.synthetic import generate_dataset
from politeteacher.errors import PoliteTeacherError

N_JSON = 137


@pytest.fixture(scope="module")
def json_only(tmp_path_factory):
    """A COCO JSON (no image files needed to split) with 137 annotated images (ids 5, 8, 11, ...
    listed out of order), 3 crowd-only images and 2 without annotations."""
    path = tmp_path_factory.mktemp("split") / "instances.json"
    ids = [5 + 3 * i for i in range(N_JSON + 5)][::-1]
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 10, "width": 10} for i in ids]
    annotations = []
    for k, image_id in enumerate(ids[: N_JSON + 3]):
        crowd = k < 3  # the 3 highest ids are crowd-only
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": 1, "iscrowd": int(crowd),
                            "bbox": [1, 1, 4, 4], "area": 16,
                            "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return path


@pytest.fixture(scope="module")
def annotated_ids(json_only):
    data = json.loads(json_only.read_text())
    return sorted({a["image_id"] for a in data["annotations"] if not a["iscrowd"]})


def test_candidates_are_annotated_images_sorted_by_id(json_only, annotated_ids):
    split = make_split(str(json_only), 50, 0)
    assert split.num_candidates == N_JSON == len(annotated_ids)
    assert set(split.image_ids) <= set(annotated_ids)


@pytest.mark.parametrize("percent", [1, 2, 5, 10, 33.3, 50, 99.9])
def test_exact_counts(json_only, percent):
    split = make_split(str(json_only), percent, 1)
    assert split.num_labeled == len(split.image_ids) == int(percent / 100 * N_JSON)
    assert len(set(split.image_ids)) == split.num_labeled
    assert split.image_ids == sorted(split.image_ids)


def test_deterministic_and_seeds_differ(json_only):
    a, b = make_split(str(json_only), 10, 1), make_split(str(json_only), 10, 1)
    assert a == b
    assert make_split(str(json_only), 10, 2).image_ids != a.image_ids
    assert a.sha256 and a.percent == 10 and a.seed == 1 and a.annotation_file == str(json_only)


def test_crowd_only_and_unannotated_images_are_never_labelled(toy):
    chosen = set()
    for seed in range(30):
        chosen |= set(make_split(str(toy.json), 50, seed).image_ids)
    assert toy.crowd_only_id not in chosen and toy.empty_id not in chosen
    assert len(chosen) == toy.num_annotated


@pytest.mark.parametrize("percent", [0, 100, -1, 150, float("nan")])
def test_percent_must_be_in_open_interval(json_only, percent):
    with pytest.raises(PoliteTeacherError, match=r"percent must be in \(0, 100\)"):
        make_split(str(json_only), percent, 0)


def test_percent_too_small_for_the_dataset(json_only):
    with pytest.raises(PoliteTeacherError, match="choose a larger percent"):
        make_split(str(json_only), 0.5, 0)


def test_save_load_round_trip(json_only, tmp_path):
    split = make_split(str(json_only), 10, 3)
    path = split.save(tmp_path / "sub" / "split.json")
    assert Split.load(path) == split
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "politeteacher-split/1"}', "[]"])
def test_load_bad_split_file(tmp_path, content):
    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PoliteTeacherError, match=str(path)):
        Split.load(path)


def _ut_file(path: Path) -> dict:
    # Unbiased Teacher's layout: unsorted indices into the annotated images sorted by id.
    data = {"1.0": {"0": [17], "1": [3]}, "10.0": {"0": list(range(0, 130, 10)), "1": [99, 5, 42, 7, 120, 64, 1, 88, 33, 71, 11, 136, 50]}}
    path.write_text(json.dumps(data))
    return data


def test_import_ut_indices_into_annotated_images(json_only, annotated_ids, tmp_path):
    _ut_file(tmp_path / "COCO_supervision.txt")
    split = import_ut(tmp_path / "COCO_supervision.txt", str(json_only), 10, 1)
    expected = sorted(annotated_ids[i] for i in [99, 5, 42, 7, 120, 64, 1, 88, 33, 71, 11, 136, 50])
    assert split.image_ids == expected and split.num_labeled == 13 and split.num_candidates == N_JSON
    assert split.source.startswith("unbiased_teacher")


def test_ut_round_trip_is_exact(json_only, tmp_path):
    original = _ut_file(tmp_path / "ut.txt")
    for percent in (1, 10):
        for seed in (0, 1):
            split = import_ut(tmp_path / "ut.txt", str(json_only), percent, seed)
            export_ut(split, tmp_path / "ut.txt")  # into the same file: unchanged
            assert json.loads((tmp_path / "ut.txt").read_text()) == original
            export_ut(split, tmp_path / "new.txt")  # into a new file: same images back
            assert import_ut(tmp_path / "new.txt", str(json_only), percent, seed).image_ids == split.image_ids


def test_export_ut_merges_into_other_entries(json_only, tmp_path):
    original = _ut_file(tmp_path / "ut.txt")
    split = make_split(str(json_only), 5, 7)
    export_ut(split, tmp_path / "ut.txt")
    merged = json.loads((tmp_path / "ut.txt").read_text())
    assert {k: v for k, v in merged.items() if k != "5.0"} == original
    assert list(merged["5.0"]) == ["7"] and len(merged["5.0"]["7"]) == split.num_labeled
    # a different split for an existing (percent, seed) replaces only that entry
    other = make_split(str(json_only), 10, 1)
    export_ut(other, tmp_path / "ut.txt")
    merged = json.loads((tmp_path / "ut.txt").read_text())
    assert merged["10.0"]["0"] == original["10.0"]["0"] and merged["1.0"] == original["1.0"]
    assert import_ut(tmp_path / "ut.txt", str(json_only), 10, 1).image_ids == other.image_ids


def test_import_ut_errors(json_only, tmp_path):
    _ut_file(tmp_path / "ut.txt")
    with pytest.raises(PoliteTeacherError, match="no entry for percent 2.0"):
        import_ut(tmp_path / "ut.txt", str(json_only), 2, 0)
    with pytest.raises(PoliteTeacherError, match="no seed 5"):
        import_ut(tmp_path / "ut.txt", str(json_only), 10, 5)
    (tmp_path / "big.txt").write_text(json.dumps({"10.0": {"0": [0, 5000]}}))
    with pytest.raises(PoliteTeacherError, match="outside"):
        import_ut(tmp_path / "big.txt", str(json_only), 10, 0)
    (tmp_path / "broken.txt").write_text("{")
    with pytest.raises(PoliteTeacherError, match=str(tmp_path / "broken.txt")):
        import_ut(tmp_path / "broken.txt", str(json_only), 10, 0)


def test_split_of_another_dataset_is_an_error(json_only, toy):
    split = make_split(str(json_only), 10, 0)
    with pytest.raises(PoliteTeacherError, match="not in dataset"):
        check_split(split, str(toy.json))


def test_changed_annotation_file_is_refused(json_only, tmp_path):
    split = make_split(str(json_only), 10, 0)
    changed = tmp_path / "changed.json"
    data = json.loads(json_only.read_text())
    data["info"] = {"note": "edited"}
    changed.write_text(json.dumps(data))
    with pytest.raises(PoliteTeacherError, match=f"made for dataset {json_only} .* {changed} .*make a new split"):
        check_split(split, str(changed))
    check_split(split, str(json_only))  # the same file: accepted


# ---- labeled_and_unlabeled ---------------------------------------------------------------------


def test_labeled_and_unlabeled_from_percent(toy_cfg, toy):
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.PERCENT, cfg.DATASETS.SPLIT.SEED = 50.0, 4
    labeled, unlabeled = labeled_and_unlabeled(cfg)
    assert len(labeled) == 10 and len(unlabeled) == 12
    lab_ids, unl_ids = {d["image_id"] for d in labeled}, {d["image_id"] for d in unlabeled}
    assert not lab_ids & unl_ids and len(lab_ids | unl_ids) == 22
    assert {toy.crowd_only_id, toy.empty_id} <= unl_ids
    assert lab_ids == set(make_split("custom_train", 50, 4).image_ids)
    assert all(d["annotations"] for d in labeled)
    assert all("annotations" not in d for d in unlabeled)
    hidden = [d for d in unlabeled if "hidden_annotations" in d]
    assert len(hidden) == 11  # the 10 annotated ones and the crowd-only one; not the empty one


def test_percent_100_labels_everything(toy_cfg, tmp_path):
    from PIL import Image

    (tmp_path / "raw").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "raw" / "x.jpg")
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.PERCENT = 100.0
    labeled, unlabeled = labeled_and_unlabeled(cfg)
    assert len(labeled) == 20 and unlabeled == []
    cfg.DATASETS.UNLABELED_IMAGE_DIRS = [str(tmp_path / "raw")]
    labeled, unlabeled = labeled_and_unlabeled(cfg)
    assert len(labeled) == 20 and [d["width"] for d in unlabeled] == [32]


def test_split_file_and_image_folders(toy_cfg, toy, tmp_path):
    from PIL import Image

    (tmp_path / "raw").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 24)).save(tmp_path / "raw" / f"{i}.png")
    split = make_split(str(toy.json), 25, 9)
    split.save(tmp_path / "split.json")
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.FILE = str(tmp_path / "split.json")
    cfg.DATASETS.UNLABELED_IMAGE_DIRS = [str(tmp_path / "raw")]
    labeled, unlabeled = labeled_and_unlabeled(cfg)
    assert sorted(d["image_id"] for d in labeled) == split.image_ids and len(labeled) == 5
    assert len(unlabeled) == 22 - 5 + 3
    assert all("annotations" not in d for d in unlabeled)


def test_split_file_of_another_dataset(toy_cfg, json_only, tmp_path):
    make_split(str(json_only), 10, 0).save(tmp_path / "split.json")
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.FILE = str(tmp_path / "split.json")
    with pytest.raises(PoliteTeacherError, match="not in dataset custom_train"):
        labeled_and_unlabeled(cfg)


def test_split_of_another_dataset_with_the_same_ids_is_refused_before_training(toy_cfg, toy, tmp_path):
    # Another generated set: image ids 1..20 as in the toy set, so every id of its split exists.
    other = generate_dataset(tmp_path, 20, seed=11, image_size=(64, (56, 96)), max_objects=4)
    make_split(str(other), 50, 1).save(tmp_path / "other_split.json")
    toy_cfg.DATASETS.SPLIT.FILE = str(tmp_path / "other_split.json")
    with pytest.raises(PoliteTeacherError) as e:
        setup_datasets(toy_cfg)
    msg = str(e.value)
    assert f"split file {tmp_path / 'other_split.json'} was made for dataset {other}" in msg
    assert f"dataset custom_train has annotation file {toy.json}" in msg
    assert "make a new split for custom_train with `politeteacher split` (e.g. --percent 50 --split-seed 1)" in msg
    assert "\n" not in msg


def test_bad_percent_in_config(toy_cfg):
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.PERCENT = 150.0
    with pytest.raises(PoliteTeacherError, match="percent"):
        labeled_and_unlabeled(cfg)


def test_candidate_ids():
    dicts = [{"image_id": 3, "annotations": [{"iscrowd": 0}]}, {"image_id": 1, "annotations": [{"iscrowd": 0}, {"iscrowd": 1}]},
             {"image_id": 2, "annotations": [{"iscrowd": 1}]}, {"image_id": 4, "annotations": []}]
    assert candidate_ids(dicts) == [1, 3]
