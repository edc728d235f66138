"""The package's file writes: all or none, with the user's umask."""
import json
import os
import stat
from pathlib import Path

import pytest

from politeteacher.config import resolve_config, save_config
from politeteacher.data.splits import Split
from politeteacher.errors import PoliteTeacherError
from politeteacher.io import NoSpaceError, write_json_atomic, write_jsons_atomic


@pytest.fixture
def restore_umask():
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_written_files_follow_the_umask(tmp_path, restore_umask, mask):
    os.umask(mask)
    split = Split(dataset="d", annotation_file="a.json", sha256="", percent=10.0, seed=1, image_ids=[1], num_labeled=1)
    assert _mode(split.save(tmp_path / "split.json")) == 0o666 & ~mask
    write_json_atomic({"a": 1}, tmp_path / "sub" / "x.json")
    assert _mode(tmp_path / "sub" / "x.json") == 0o666 & ~mask


def test_several_files_are_written_all_or_none(tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text('{"old": true}')
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    files = [({"new": 1}, kept, {}), ({"new": 2}, tmp_path / "new" / "deeper" / "a.json", {}),
             ({"new": 3}, blocker / "b.json", {})]
    with pytest.raises(PoliteTeacherError, match=f"cannot write {blocker / 'b.json'} .*writable folder") as e:
        write_jsons_atomic(files)
    assert "\n" not in str(e.value)
    assert kept.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "kept.json"]  # no temporary file, no folder

    write_jsons_atomic(files[:2])
    assert json.loads(kept.read_text()) == {"new": 1}
    assert json.loads((tmp_path / "new" / "deeper" / "a.json").read_text()) == {"new": 2}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_config_saved_on_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path):
    # Writes into /dev/full fail with ENOSPC: the config's temporary file is made one.
    (tmp_path / "config.yaml").write_text("old")
    (tmp_path / "config.yaml.tmp").symlink_to("/dev/full")
    with pytest.raises(NoSpaceError) as e:
        save_config(resolve_config("demo"), tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path / "config.yaml") in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporary file left
    assert (tmp_path / "config.yaml").read_text() == "old"
