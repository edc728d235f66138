"""The YAML presets shipped inside the package (the repository's top-level `presets/` folder)."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Dict, List

from .errors import PoliteTeacherError


class PresetNotFound(PoliteTeacherError):
    pass


# The families `presets list` groups by, in display order. A preset's family follows from the naming
# convention: centermask_[lite_]<model>_FPN_<schedule>, baseline_<model>_supN, polite_teacher_<model>_supN,
# where no model means the paper's R-50; <kind>_small_data for a user's own small dataset.
FAMILIES = (
    "CenterMask R-50 (the paper's model)",
    "CenterMask R-101",
    "CenterMask VoVNetV2 (V-39/57/99-eSE, 256-channel FPN)",
    "CenterMask-Lite (VoVNetV2 / MobileNetV2, 128-channel FPN)",
    "Your own data (a few hundred images, CenterMask R-50)",
    "Demo (generated shapes, CPU)",
)


def _presets_dir() -> Path:
    return Path(str(resources.files("politeteacher.builtin_presets")))


def list_presets() -> List[str]:
    """Names of the built-in presets (file names without `.yaml`), sorted."""
    names = [p.stem for p in _presets_dir().glob("*.yaml") if not p.stem.startswith("Base-")]
    # Natural order, so sup2 comes before sup10.
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def preset_path(name: str) -> Path:
    """Path of a built-in preset by name (with or without `.yaml`)."""
    path = _presets_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        raise PresetNotFound(
            f"unknown preset '{name}'; built-in presets: {', '.join(list_presets())} "
            "(see `politeteacher presets list`)"
        )
    return path


def preset_descriptions() -> Dict[str, str]:
    """First comment line of each preset, which says what it is for."""
    out = {}
    for name in list_presets():
        first = preset_path(name).read_text().splitlines()[0]
        out[name] = first.lstrip("# ").strip() if first.startswith("#") else ""
    return out


def preset_family(name: str) -> str:
    """The entry of FAMILIES that preset ``name`` belongs to."""
    if name.startswith("demo"):
        return FAMILIES[5]
    if name.endswith("_small_data"):
        return FAMILIES[4]
    if "_lite_" in name:
        return FAMILIES[3]
    if "R101" in name:
        return FAMILIES[1]
    if re.search(r"_V\d", name):
        return FAMILIES[2]
    return FAMILIES[0]


def presets_by_family() -> Dict[str, Dict[str, str]]:
    """{family: {preset: first comment line}}, families in FAMILIES order (empty ones left out)."""
    groups: Dict[str, Dict[str, str]] = {family: {} for family in FAMILIES}
    for name, description in preset_descriptions().items():
        groups[preset_family(name)][name] = description
    return {family: presets for family, presets in groups.items() if presets}
