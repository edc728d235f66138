"""Run the installed command as a user would, in a subprocess or in this process."""
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import NamedTuple


def run_cli(*args, cwd=None, env=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "politeteacher", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


class CliResult(NamedTuple):
    """What a command left: read as `.returncode`, `.stdout`, `.stderr` (like a CompletedProcess) or
    unpacked as `code, out, err`."""
    returncode: int
    stdout: str
    stderr: str


def run_in_process(*args) -> CliResult:
    """`politeteacher ARGS` through the console script's entry point, in this process (no start-up
    cost)."""
    from politeteacher.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["politeteacher", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *fragments):
    """Bad input: exit code != 0, no traceback, one `error:` line naming what is wrong."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


def assert_usage_error(code, out, err, *needles):
    """Bad input caught before any work: exit code 2, and stderr is the one `error:` line alone."""
    assert code == 2, (code, out, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in out + err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def user_dataset(root):
    """Generated data laid out as a user's: annotations/{train,val}.json, images/{train,val}/ (6 and 3
    images), and raw/ and new_photos/ (copies of the 3 val images)."""
    import shutil
    from pathlib import Path

    from politeteacher.data.synthetic import generate_dataset

    root = Path(root)
    gen = root / "gen"
    (root / "annotations").mkdir()
    (root / "images").mkdir()
    for split, count, seed in (("train", 6, 0), ("val", 3, 1)):
        json_file = generate_dataset(gen, count, seed=seed, split=split, image_size=(96, 112), max_objects=3)
        shutil.move(json_file, root / "annotations" / f"{split}.json")
        shutil.move(gen / split, root / "images" / split)
    shutil.rmtree(gen)
    for folder in ("raw", "new_photos"):
        shutil.copytree(root / "images" / "val", root / folder)
    return root
