"""The YAML presets shipped inside the package (the repository's top-level `presets/` folder)."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Dict, List

from .errors import PoliteTeacherError


class PresetNotFound(PoliteTeacherError):
    pass


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
