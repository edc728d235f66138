"""Labelled / unlabelled splits (polite_teacher.md §6).

A split file records the labelled image *ids* (robust to reordering), the percent and seed, the
dataset and its annotation file with a sha256. The candidates are the images with at least one
non-crowd annotation, as detectron2 loads them, sorted by image id; ``int(percent / 100 * N)`` of
them are labelled. Unbiased Teacher's ``COCO_supervision.txt`` (``{"<percent>": {"<seed>":
[indices into the candidates]}}``) can be imported and exported exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog

from ..errors import PoliteTeacherError
from ..io import read_json, write_json_atomic
from .datasets import _load_checked, dataset_json, get_dataset_dicts, load_image_folder

logger = logging.getLogger(__name__)

__all__ = [
    "Split",
    "candidate_ids",
    "check_split",
    "export_ut",
    "file_sha256",
    "hide_annotations",
    "import_ut",
    "labeled_and_unlabeled",
    "make_split",
    "split_for",
    "ut_file_data",
]

FORMAT = "politeteacher-split/1"
PathLike = Union[str, os.PathLike]


@dataclass
class Split:
    """The labelled images of one dataset. ``image_ids`` is sorted."""

    dataset: str
    annotation_file: str
    sha256: str
    percent: float
    seed: int
    image_ids: List = field(default_factory=list)
    num_labeled: int = 0
    num_candidates: int = 0
    source: str = "random"  # "random" (make_split) or "unbiased_teacher:<file>" (import_ut)

    def to_json(self) -> dict:
        """The content of a split file."""
        return {"format": FORMAT, **dataclasses.asdict(self)}

    def save(self, path: PathLike) -> Path:
        """Write the split as JSON, atomically (a temporary file renamed into place)."""
        path = Path(path)
        write_json_atomic(self.to_json(), path, indent=1)
        return path

    @classmethod
    def load(cls, path: PathLike) -> "Split":
        path = Path(path)
        data = read_json(path, "a split file written by `politeteacher split`")
        names = {f.name for f in dataclasses.fields(cls)}
        required = names - {"source"}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not required <= data.keys():
            raise PoliteTeacherError(
                f"{path} is not a politeteacher split file: expected a JSON object with format "
                f"{FORMAT!r} and keys {', '.join(sorted(required))}; make one with `politeteacher split`"
            )
        split = cls(**{k: v for k, v in data.items() if k in names})
        if len(split.image_ids) != split.num_labeled:
            raise PoliteTeacherError(
                f"{path} lists {len(split.image_ids)} image ids but num_labeled is "
                f"{split.num_labeled}: the file was edited or truncated; make it again"
            )
        return split


# ---------------------------------------------------------------------------------------------
# helpers


def file_sha256(path: Optional[PathLike]) -> str:
    """Hex sha256 of a file, or "" when there is none."""
    if not path or not os.path.isfile(path):
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _has_instance(d: dict) -> bool:
    return any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", ()))


def candidate_ids(dicts: Sequence[dict]) -> List:
    """Ids of the images with at least one non-crowd annotation, sorted (the images a split draws
    from, and what Unbiased Teacher's indices index)."""
    return sorted(d["image_id"] for d in dicts if _has_instance(d))


def _load(dataset: str) -> Tuple[str, str, List[dict]]:
    """(name, annotation file, dicts) for a dataset name or a COCO JSON path."""
    if dataset.endswith(".json") or os.sep in dataset:
        dicts = _load_checked(dataset, "", None, "a COCO instances JSON")
        return dataset, dataset, dicts
    dicts = get_dataset_dicts(dataset)
    json_file = dataset_json(dataset)
    return dataset, str(json_file) if json_file else "", dicts


def _check_percent(percent: float) -> float:
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        percent = float("nan")
    if not 0 < percent < 100:
        raise PoliteTeacherError(
            f"split percent must be in (0, 100), got {percent}; for every image labelled, "
            "train with DATASETS.SPLIT.PERCENT 100 and no split file"
        )
    return percent


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise PoliteTeacherError(f"split seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------------------------------------
# making, importing, exporting, checking


def _make_split(name: str, json_file: str, dicts: Sequence[dict], percent: float, seed: int) -> Split:
    percent, seed = _check_percent(percent), _check_seed(seed)
    candidates = candidate_ids(dicts)
    num = int(percent / 100 * len(candidates))
    if num < 1:
        raise PoliteTeacherError(
            f"{percent}% of the {len(candidates)} annotated images of {name} is no image: "
            "choose a larger percent"
        )
    chosen = np.random.RandomState(seed).choice(len(candidates), num, replace=False)
    return Split(
        dataset=name, annotation_file=json_file, sha256=file_sha256(json_file),
        percent=percent, seed=seed, image_ids=sorted(candidates[i] for i in chosen),
        num_labeled=num, num_candidates=len(candidates),
    )


def make_split(dataset: str, percent: float, seed: int, loaded: Optional[Tuple[str, str, List[dict]]] = None) -> Split:
    """Pick ``int(percent / 100 * N)`` labelled images among the N annotated images of ``dataset``
    (a dataset name or a COCO JSON path), deterministically for (percent, seed). ``loaded``: what
    :func:`load_dataset` returned for ``dataset``, to not read it again."""
    name, json_file, dicts = loaded or _load(dataset)
    return _make_split(name, json_file, dicts, percent, seed)


def load_dataset(dataset: str) -> Tuple[str, str, List[dict]]:
    """(name, annotation file, dataset dicts) of a dataset name or a COCO JSON path."""
    return _load(dataset)


def class_instance_counts(split: Split, loaded: Tuple[str, str, List[dict]]) -> List[Tuple[str, int, int]]:
    """(class name, labelled instances, unlabelled instances) per class, in category-id order: the
    non-crowd annotations of the split's labelled images, and of the dataset's other images."""
    name, json_file, dicts = loaded
    names: Dict[int, str] = {}
    if name != json_file:  # a registered dataset: its dicts hold contiguous ids of thing_classes
        names = dict(enumerate(MetadataCatalog.get(name).get("thing_classes", None) or ()))
    elif json_file and os.path.isfile(json_file):  # loaded without a name: the JSON's own ids
        data = read_json(Path(json_file), "a COCO instances JSON")
        names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", ()) if "id" in c}
    labeled_ids = set(split.image_ids)
    counts: Dict[int, List[int]] = {k: [0, 0] for k in names}
    for d in dicts:
        part = 0 if d["image_id"] in labeled_ids else 1
        for a in d.get("annotations", ()):
            if a.get("iscrowd", 0) == 0:
                counts.setdefault(a["category_id"], [0, 0])[part] += 1
    return [(names.get(k, str(k)), *counts[k]) for k in sorted(counts)]


def _ut_key(table: dict, value: str, numeric: bool) -> Optional[str]:
    """The key of ``table`` equal to ``value`` (as a number when ``numeric``: "1" == "1.0")."""
    for key in table:
        try:
            if (float(key) == float(value)) if numeric else key == value:
                return key
        except ValueError:
            continue
    return None


def _read_ut(path: Path) -> dict:
    expected = 'Unbiased Teacher\'s COCO_supervision.txt: {"<percent>": {"<seed>": [indices]}}'
    data = read_json(path, expected)
    ok = isinstance(data, dict) and all(
        isinstance(v, dict) and all(isinstance(ix, list) for ix in v.values()) for v in data.values()
    )
    if not ok:
        raise PoliteTeacherError(f"{path} is not in the expected format: {expected}")
    return data


def import_ut(
    ut_file: PathLike, dataset: str, percent: float, seed: int, loaded: Optional[Tuple[str, str, List[dict]]] = None
) -> Split:
    """Read the (percent, seed) entry of Unbiased Teacher's COCO_supervision.txt: indices into the
    annotated images of ``dataset`` sorted by image id."""
    path = Path(ut_file)
    data = _read_ut(path)
    percent, seed = _check_percent(percent), _check_seed(seed)
    pkey = _ut_key(data, str(percent), numeric=True)
    if pkey is None:
        raise PoliteTeacherError(
            f"{path} has no entry for percent {percent}: it has {', '.join(data) or 'none'}"
        )
    skey = _ut_key(data[pkey], str(seed), numeric=False)
    if skey is None:
        raise PoliteTeacherError(
            f"{path} has no seed {seed} for percent {pkey}: it has {', '.join(data[pkey]) or 'none'}"
        )
    indices = data[pkey][skey]
    name, json_file, dicts = loaded or _load(dataset)
    candidates = candidate_ids(dicts)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < len(candidates)]
    if bad or len(set(indices)) != len(indices):
        what = f"index {bad[0]!r} outside [0, {len(candidates)})" if bad else "repeated indices"
        raise PoliteTeacherError(
            f"{path} [{pkey}][{skey}] has {what}: it was made for another dataset than {name} "
            f"({len(candidates)} annotated images)"
        )
    return Split(
        dataset=name, annotation_file=json_file, sha256=file_sha256(json_file),
        percent=percent, seed=seed, image_ids=sorted(candidates[i] for i in indices),
        num_labeled=len(indices), num_candidates=len(candidates),
        source=f"unbiased_teacher:{path.name}",
    )


def ut_file_data(split: Split, ut_file: PathLike, dataset: Optional[str] = None) -> dict:
    """The content of the Unbiased Teacher file ``ut_file`` once ``split`` is its (percent, seed)
    entry: every other entry of an existing file is kept, and an existing entry with the same images
    is left as it is (so an imported split exports back to the identical file)."""
    path = Path(ut_file)
    data = _read_ut(path) if path.exists() else {}
    name, _, dicts = _load(dataset or split.dataset)
    candidates = candidate_ids(dicts)
    _check_ids(split, dicts, name)
    index_of = {image_id: i for i, image_id in enumerate(candidates)}
    unannotated = [i for i in split.image_ids if i not in index_of]
    if unannotated:
        raise PoliteTeacherError(
            f"split of {split.dataset} labels image {unannotated[0]!r}, which has no non-crowd "
            "annotation: Unbiased Teacher indices cannot express it"
        )
    indices = sorted(index_of[i] for i in split.image_ids)
    pkey = _ut_key(data, str(float(split.percent)), numeric=True) or str(float(split.percent))
    entry, skey = data.setdefault(pkey, {}), str(split.seed)
    old = entry.get(skey)
    if old is None or sorted(old) != indices:
        if old is not None:
            logger.warning("Replacing the entry [%s][%s] of %s", pkey, skey, path)
        entry[skey] = indices
    return data


def export_ut(split: Split, ut_file: PathLike, dataset: Optional[str] = None) -> Path:
    """Write ``split`` as the (percent, seed) entry of an Unbiased Teacher file (see
    :func:`ut_file_data`), atomically."""
    path = Path(ut_file)
    write_json_atomic(ut_file_data(split, path, dataset), path)
    return path


def _check_ids(split: Split, dicts: Sequence[dict], name: str) -> None:
    ids = {d["image_id"] for d in dicts}
    missing = [i for i in split.image_ids if i not in ids]
    if missing:
        raise PoliteTeacherError(
            f"split of {split.dataset} ({split.num_labeled} images) has {len(missing)} image ids "
            f"that are not in dataset {name} (e.g. {missing[0]!r}): make a split for this dataset "
            "with `politeteacher split`"
        )


def _check_dataset(split: Split, name: str, json_file: str, split_file: Optional[PathLike] = None) -> None:
    """Refuse a split whose recorded annotation file differs (by sha256) from the dataset's: its image
    ids may all exist there and still mean other images, or another labelled share."""
    if not split.sha256 or not json_file:
        return  # a dataset without an annotation file: only its image ids can be compared
    digest = file_sha256(json_file)
    if digest and digest != split.sha256:
        what = f"split file {split_file}" if split_file else "the split"
        raise PoliteTeacherError(
            f"{what} was made for dataset {split.dataset} (annotation file {split.annotation_file}, "
            f"sha256 {split.sha256[:12]}), but dataset {name} has annotation file {json_file} "
            f"(sha256 {digest[:12]}): another dataset, or the file changed since; make a new split "
            f"for {name} with `politeteacher split` (e.g. --percent {split.percent:g} --split-seed {split.seed})"
        )


def check_split(split: Split, dataset: str) -> None:
    """Error when the split names images that ``dataset`` lacks, or was made from another
    annotation file (another dataset, or the file changed since)."""
    name, json_file, dicts = _load(dataset)
    _check_ids(split, dicts, name)
    _check_dataset(split, name, json_file)


# ---------------------------------------------------------------------------------------------
# what a trainer asks for


def hide_annotations(d: dict) -> dict:
    """A copy of a dataset dict for the unlabelled pool: ``annotations`` removed, kept under
    ``hidden_annotations`` only for pseudo-label statistics (never as training targets)."""
    d = dict(d)
    annotations = d.pop("annotations", None)
    if annotations:
        d["hidden_annotations"] = annotations
    return d


def split_for(cfg: CfgNode, dicts: Sequence[dict]) -> Optional[Split]:
    """The split of cfg.DATASETS.TRAIN (whose dicts are ``dicts``) under cfg.DATASETS.SPLIT: SPLIT.FILE
    if set, refused when it was made for another dataset; else one made from SPLIT.PERCENT /
    SPLIT.SEED; None for PERCENT 100 without a file (every annotated image labelled)."""
    names = list(cfg.DATASETS.TRAIN)
    split_cfg = cfg.DATASETS.SPLIT
    percent = float(split_cfg.PERCENT)
    if not split_cfg.FILE and percent == 100:
        return None
    if len(names) != 1:
        raise PoliteTeacherError(
            f"a split applies to one training dataset, but DATASETS.TRAIN has {len(names)}: "
            "train on one, or set DATASETS.SPLIT.PERCENT 100 without a split file"
        )
    json_file = dataset_json(names[0])
    json_file = str(json_file) if json_file else ""
    if not split_cfg.FILE:
        return _make_split(names[0], json_file, dicts, percent, split_cfg.SEED)
    split = Split.load(split_cfg.FILE)
    _check_ids(split, dicts, names[0])
    _check_dataset(split, names[0], json_file, split_cfg.FILE)
    return split


def labeled_and_unlabeled(cfg: CfgNode) -> Tuple[List[dict], List[dict]]:
    """(labelled dicts, unlabelled dicts) of cfg.DATASETS.TRAIN under cfg.DATASETS.SPLIT.

    The split is :func:`split_for`'s; PERCENT 100 without a file labels every annotated image and
    leaves the dataset's unlabelled pool empty. The unlabelled pool is every other image of the
    dataset (images without annotations included) plus the images of DATASETS.UNLABELED_IMAGE_DIRS;
    their annotations are moved to ``hidden_annotations``. The images of
    DATALOADER.SKIPPED_IMAGES (the bad ones that the launch-time check let a run skip, see
    :mod:`.checks`) are left out. Run :func:`~politeteacher.data.datasets.register_all` first.
    """
    if not cfg.DATASETS.TRAIN:
        raise PoliteTeacherError("DATASETS.TRAIN is empty: name a training dataset")
    dicts = [d for name in cfg.DATASETS.TRAIN for d in get_dataset_dicts(name)]
    split = split_for(cfg, dicts)
    skipped = set(cfg.DATALOADER.SKIPPED_IMAGES)
    dicts = [d for d in dicts if d["file_name"] not in skipped]
    if split is None:
        labeled = [d for d in dicts if _has_instance(d)]
        unlabeled = []
    else:
        ids = set(split.image_ids)
        labeled = [d for d in dicts if d["image_id"] in ids]
        unlabeled = [hide_annotations(d) for d in dicts if d["image_id"] not in ids]
    from_dataset = len(unlabeled)
    for folder in cfg.DATASETS.UNLABELED_IMAGE_DIRS:
        unlabeled += load_image_folder(folder, skip=skipped)
    logger.info(
        "Training data: %d labelled images, %d unlabelled (%d from %s, %d from image folders)%s",
        len(labeled), len(unlabeled), from_dataset, ", ".join(cfg.DATASETS.TRAIN),
        len(unlabeled) - from_dataset, f"; {len(skipped)} bad images skipped" if skipped else "",
    )
    return labeled, unlabeled
