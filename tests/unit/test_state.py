"""The state folder: crash-safe writes, the master key."""

import os
import stat

from memory_proxy.state import StateDir, atomic_write


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
