"""Run the installed command as a user would, in a subprocess."""
import os
import subprocess
import sys


def run_cli(*args, cwd=None, env=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "politeteacher", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def assert_one_line_error(result, *fragments):
    """Bad input: exit code != 0, no traceback, one `error:` line naming what is wrong."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr
