"""`route` (and `memory`) read --header options as the server reads a request's headers."""

from __future__ import annotations

import json

import pytest
from starlette.datastructures import Headers

from memory_proxy.launcher.config_commands import client_headers, route
from memory_proxy.launcher.context import Context
from memory_proxy.state import StateDir


@pytest.fixture
def ctx(tmp_path) -> Context:
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    return Context(config, StateDir(tmp_path / "state"))


def test_a_header_given_twice_counts_by_its_first_value_as_on_the_server():
    given = client_headers(None, ["X-Memory-User-Id: a", "x-memory-user-id: b"])
    server = Headers(raw=[(b"x-memory-user-id", b"a"), (b"x-memory-user-id", b"b")])
    assert given["x-memory-user-id"] == server.get("x-memory-user-id") == "a"


def test_route_picks_the_first_of_a_repeated_header(ctx, capsys):
    assert route(ctx, None, ["x-memory-user-id: a", "x-memory-user-id: b"], "/v1/chat/completions", True) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == "a"


@pytest.mark.parametrize("item", ["bad name: v", " x-memory-user-id: a", "x-memory-user-id : a", "nocolon", ": v"])
def test_a_header_the_server_would_refuse_is_refused_with_exit_2_and_json(ctx, capsys, item):
    with pytest.raises(ValueError):
        client_headers(None, [item])
    assert route(ctx, None, [item], "/v1/chat/completions", True) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and "--header" in answer["error"]


def test_a_config_error_is_json_with_json(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("memory_proxy:\n  port: 0\n")
    assert route(Context(config, StateDir(tmp_path / "state")), None, [], "/", True) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and "config.yaml:2: memory_proxy.port" in answer["error"]
