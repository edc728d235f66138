"""`politeteacher presets list` groups the presets by model family."""
from politeteacher.presets import FAMILIES, list_presets, preset_family

from .helpers import run_cli


def test_presets_list_groups_by_family():
    listing = run_cli("presets", "list")
    assert listing.returncode == 0, listing.stderr
    out = listing.stdout
    starts = [out.index(family) for family in FAMILIES]
    assert starts == sorted(starts)  # every family, in FAMILIES order
    ends = dict(zip(FAMILIES, starts[1:] + [len(out)]))
    for name in list_presets():
        family = preset_family(name)
        section = out[out.index(family):ends[family]]
        assert f"│ {name} " in section, (name, family)


def test_preset_families_follow_the_naming_convention():
    assert {n: preset_family(n) for n in ("baseline_sup10", "centermask_R50_FPN_ms3x", "polite_teacher_R101_sup1",
                                          "centermask_V99_eSE_dcn_FPN_ms3x", "baseline_lite_V19_slim_eSE_sup5",
                                          "centermask_lite_Mv2_FPN_ms4x", "demo_polite_teacher",
                                          "polite_teacher_small_data")} == {
        "baseline_sup10": FAMILIES[0], "centermask_R50_FPN_ms3x": FAMILIES[0],
        "polite_teacher_R101_sup1": FAMILIES[1], "centermask_V99_eSE_dcn_FPN_ms3x": FAMILIES[2],
        "baseline_lite_V19_slim_eSE_sup5": FAMILIES[3], "centermask_lite_Mv2_FPN_ms4x": FAMILIES[3],
        "polite_teacher_small_data": FAMILIES[4], "demo_polite_teacher": FAMILIES[5],
    }


def test_presets_cite_no_unshipped_document():
    """Preset comments cite the papers in words, not spec files that are not shipped (`*.md §n`)."""
    import re
    from pathlib import Path

    presets = sorted((Path(__file__).resolve().parents[2] / "presets").glob("*.yaml"))
    assert presets
    for path in presets:
        cited = re.findall(r"[\w.-]+\.md\b|§", path.read_text())
        assert not cited, (path.name, cited)
