"""`check`'s output: problems with their line and key under --json, the real config path."""

from __future__ import annotations

import json

from memory_proxy.launcher.config_commands import check
from memory_proxy.launcher.context import Context
from memory_proxy.state import StateDir


def test_check_json_problems_have_line_and_key(tmp_path, capsys):
    config = tmp_path / "other.yaml"
    config.write_text("memory_proxy:\n  port: 0\n")
    assert check(Context(config, StateDir(tmp_path / "state")), True) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["problems"] == [{"line": 2, "key": "memory_proxy.port",
                                   "message": "must be an integer between 1 and 65535, got 0"}]


def test_check_names_the_config_it_was_given(tmp_path, capsys):
    config = tmp_path / "other.yaml"
    config.write_text("model_list: []\n")
    check(Context(config, StateDir(tmp_path / "state")), False)
    printed = capsys.readouterr().out
    assert f"from {config} on every start" in printed and "config/config.yaml" not in printed
