"""The state folder: crash-safe writes, the master key."""

import os
import stat

import pytest

from memory_proxy.state import StateDir, StateDirError, atomic_write


def test_master_key_generated_once_mode_0600(tmp_path):
    state = StateDir(tmp_path / "s").ensure()
    key = state.master_key({})
    assert key.startswith("sk-") and len(key) > 40 and key != "sk-1234"
    assert state.master_key({}) == key
    assert stat.S_IMODE(os.stat(state.master_key_file).st_mode) == 0o600
    assert state.master_key({"LITELLM_MASTER_KEY": "sk-from-env-0123456789"}) == "sk-from-env-0123456789"


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, "one")
    atomic_write(target, "two", mode=0o644)
    assert target.read_text() == "two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_state_folder_that_cannot_be_one_is_named_without_creating_anything(tmp_path):
    (tmp_path / "file").write_text("")
    assert "/file is not a folder" in StateDir(tmp_path / "file").problem()
    assert "cannot be made: " + str(tmp_path / "file") in StateDir(tmp_path / "file" / "below").problem()
    (tmp_path / "s" / "logs").parent.mkdir()
    (tmp_path / "s" / "logs").write_text("")
    with pytest.raises(StateDirError, match="/s/logs is not a folder"):
        StateDir(tmp_path / "s").ensure()
    fresh = StateDir(tmp_path / "new")
    assert fresh.problem() is None and not fresh.root.exists()
    assert fresh.ensure().logs.is_dir()
