"""What an installed package holds: a wheel built from this repository, installed on its own, finds
every preset and the demo's pre-trained weights (the editable install of the tests would find them in
the repository whatever the wheel holds)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_ships_the_presets_and_the_demo_weights(tmp_path):
    # Built from a copy of what the wheel is made of, so that the build writes nothing into the repository.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "presets", src / "presets")
    shutil.copytree(REPO / "politeteacher", src / "politeteacher", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "builtin_presets"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--wheel-dir", str(tmp_path / "dist"), str(src)], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("politeteacher-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path)
    probe = (
        "import politeteacher, politeteacher.presets as p, politeteacher.pretrained as w\n"
        "print(politeteacher.__file__)\n"
        "print(len(p.list_presets()), len(list(p.preset_path('demo').parent.glob('*.yaml'))))\n"
        "print(p.preset_path('polite_teacher_sup10').read_text().splitlines()[0])\n"
        "print((w.WEIGHTS_DIR / 'demo_source_R18_GN.pkl').stat().st_size)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(site)}, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where, counts, first_line, weights_size = done.stdout.splitlines()
    assert Path(where).is_relative_to(site)  # the installed copy, not the repository
    repo_presets = list((REPO / "presets").glob("*.yaml"))
    assert counts == f"{len([p for p in repo_presets if not p.stem.startswith('Base-')])} {len(repo_presets)}"
    assert first_line == (REPO / "presets" / "polite_teacher_sup10.yaml").read_text().splitlines()[0]
    assert int(weights_size) == (REPO / "politeteacher" / "weights" / "demo_source_R18_GN.pkl").stat().st_size
