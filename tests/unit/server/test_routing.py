"""Client id resolution and header rules."""

from pathlib import Path

import pytest

from memory_proxy.config.model import parse_config
from memory_proxy.server import headers as h
from memory_proxy.server.routing import InvalidClientId, resolve, split_scope
from tests.support import ROOT

CONFIG = parse_config(ROOT.joinpath("config", "config.yaml").read_text(),
                      Path("config.yaml"), {"SUPERMEMORY_API_KEY": "sm-test"})
MAPPINGS = CONFIG.user_id_mappings


@pytest.mark.parametrize("ua, expected", [
    ("OpenAIClientImpl/Java unknown", "pycharm-ai"),
    ("claude-cli/2.0.14 (external, cli)", "claude-cli"),
    ("CLAUDE-CLI/1.0", "claude-cli"),  # case-insensitive
    ("OpenAI/Python 1.99.0", "openai-python"),
    ("AsyncOpenAI/Python 3.57.0", "openai-python"),
    ("Anthropic/Python 0.69.0", "anthropic-python"),
    ("curl/8.5.0", "curl"),
    ("Mozilla/5.0", "default-dev"),
])
def test_user_agent_patterns(ua, expected):
    assert resolve(MAPPINGS, {"user-agent": ua}, "/v1/chat/completions").user_id == expected


def test_first_match_wins_and_reason_names_pattern():
    r = resolve(MAPPINGS, {"user-agent": "claude-cli/2.0"}, "/v1/messages")
    assert (r.source, r.pattern_index) == ("pattern", 1)
    assert "header_patterns[1]" in r.detail


def test_custom_header_beats_scope_and_patterns():
    r = resolve(MAPPINGS, {"user-agent": "claude-cli/2.0", "x-memory-user-id": "proj-a"}, "/scope/proj-b/v1/models")
    assert (r.user_id, r.source, r.path) == ("proj-a", "custom_header", "/v1/models")


def test_scope_path_sets_id_and_is_stripped():
    r = resolve(MAPPINGS, {"user-agent": "OpenAIClientImpl/Java"}, "/scope/my.project:1/v1/chat/completions")
    assert (r.user_id, r.source, r.path) == ("my.project:1", "scope_path", "/v1/chat/completions")
    assert split_scope("/scope/x") == ("x", "/")
    assert split_scope("/v1/scope/x") == (None, "/v1/scope/x")


@pytest.mark.parametrize("bad", ["has space", "a" * 129, "tab\there", "", "ünï", ".", ".."])
def test_invalid_explicit_ids_are_refused(bad):
    with pytest.raises(InvalidClientId):
        resolve(MAPPINGS, {"x-memory-user-id": bad}, "/v1/models")


@pytest.mark.parametrize("bad", ["has space", "a" * 129, "abc\n", ".", "..", "..."])
def test_invalid_scope_ids_are_refused(bad):
    with pytest.raises(InvalidClientId):
        resolve(MAPPINGS, {}, f"/scope/{bad}/v1/models")


def test_default_when_nothing_matches():
    r = resolve(MAPPINGS, {}, "/v1/models")
    assert (r.user_id, r.source) == ("default-dev", "default")


def test_ingress_headers_drop_forgeries_credentials_and_hop_by_hop():
    incoming = [
        ("host", "127.0.0.1:8764"), ("content-length", "10"), ("connection", "keep-alive, x-drop-me"),
        ("x-drop-me", "1"), ("transfer-encoding", "chunked"), ("authorization", "Bearer client-key"),
        ("x-api-key", "client-key"), ("x-sm-user-id", "victim"), ("X-Supermemory-User-Id".lower(), "victim"),
        ("x-memory-user-id", "proj"), ("x-memory-proxy-egress-secret", "guess"), ("accept", "text/event-stream"),
        ("x-claude-code-session-id", "sess-1"), ("user-agent", "claude-cli/2"), ("x-litellm-call-id", "forged"),
    ]
    out = h.ingress_request_headers(incoming, custom_header="x-memory-user-id", user_id="proj",
                                    master_key="sk-master", request_id="rid")
    assert dict(out) == {
        "accept": "text/event-stream", "user-agent": "claude-cli/2", "x-claude-code-session-id": "sess-1",
        "authorization": "Bearer sk-master", "x-supermemory-user-id": "proj", "x-request-id": "rid",
        "x-litellm-call-id": "rid", "x-supermemory-conversation-id": "sess-1",
    }


def test_egress_headers_turn_ours_into_supermemorys():
    incoming = [("x-memory-proxy-egress-secret", "s"), ("x-supermemory-user-id", "proj"),
                ("x-supermemory-conversation-id", "sess"), ("x-sm-user-id", "forged"), ("x-api-key", "provider"),
                ("content-length", "5"), ("host", "x")]
    out = h.egress_request_headers(incoming, user_id="proj", api_key="sm-key")
    assert dict(out) == {"x-api-key": "provider", "x-sm-user-id": "proj", "x-supermemory-api-key": "sm-key",
                         "x-sm-conversation-id": "sess"}


def test_response_headers_keep_length_unless_chunked():
    assert h.response_headers([("content-length", "5"), ("server", "uvicorn"), ("x-a", "1")]) == [
        ("content-length", "5"), ("x-a", "1")]
    assert h.response_headers([("content-length", "5"), ("transfer-encoding", "chunked")]) == []
