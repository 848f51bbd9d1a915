"""Property tests (hypothesis) of the header rules in both directions and of client-id
resolution; ``tests/faults/test_properties.py`` tries the same rules with more examples."""

from hypothesis import example, given
from hypothesis import strategies as st

from memory_proxy.config.model import CLIENT_ID_RE, HeaderPattern, UserIdMappings
from memory_proxy.server import headers as h
from memory_proxy.server.routing import InvalidClientId, resolve, valid_id

header_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
forged = st.sampled_from(["x-sm-user-id", "x-sm-conversation-id", "x-supermemory-user-id",
                          "x-supermemory-api-key", "x-memory-proxy-egress-secret", "authorization", "x-api-key"])


@given(st.lists(st.tuples(st.one_of(header_names, forged), header_values), max_size=15),
       st.from_regex(CLIENT_ID_RE, fullmatch=True))
def test_ingress_headers_never_carry_forged_memory_or_credentials(headers, user_id):
    out = h.ingress_request_headers(headers, custom_header="x-memory-user-id", user_id=user_id,
                                    master_key="sk-master", request_id="rid")
    memory = [(n, v) for n, v in out if h.is_memory_header(n)]
    assert memory == [(h.USER_ID_HEADER, user_id)] or (
        memory[0] == (h.USER_ID_HEADER, user_id) and memory[1][0] == h.CONVERSATION_HEADER and len(memory) == 2)
    assert [v for n, v in out if n in ("authorization", "x-api-key", "api-key")] == ["Bearer sk-master"]
    assert h.EGRESS_SECRET_HEADER not in dict(out)
    assert not {n for n, _ in out} & (h.HOP_BY_HOP | {"host", "content-length"})


@given(st.lists(st.tuples(st.one_of(header_names, forged), header_values), max_size=15),
       st.from_regex(CLIENT_ID_RE, fullmatch=True))
def test_egress_headers_name_exactly_one_user(headers, user_id):
    out = h.egress_request_headers(headers, user_id=user_id, api_key="sm-key")
    assert [v for n, v in out if n == "x-sm-user-id"] == [user_id]
    assert [v for n, v in out if n == "x-supermemory-api-key"] == ["sm-key"]
    assert h.EGRESS_SECRET_HEADER not in dict(out) and h.USER_ID_HEADER not in dict(out)


MAPPINGS = UserIdMappings("x-memory-user-id", (
    HeaderPattern("user-agent", "^claude-cli/", "claude-cli", __import__("re").compile("^claude-cli/", 2)),), "dflt")


@given(st.text(max_size=140), st.text(max_size=60))
@example("..", "")  # dots alone: refused, though CLIENT_ID_RE matches
def test_resolution_is_total_and_only_yields_valid_ids(custom, user_agent):
    try:
        r = resolve(MAPPINGS, {"x-memory-user-id": custom, "user-agent": user_agent}, "/v1/models")
    except InvalidClientId:
        assert not valid_id(custom.strip())
        return
    assert valid_id(r.user_id) and r.user_id == custom.strip() and r.source == "custom_header"


@given(st.text(max_size=60), st.text(max_size=30))
@example("", ".")
@example("", "abc\n")  # CLIENT_ID_RE.match takes the newline for the end; the id is checked whole
def test_scope_paths_resolve_or_refuse(user_agent, scope):
    path = f"/scope/{scope}/v1/chat/completions"
    try:
        r = resolve(MAPPINGS, {"user-agent": user_agent}, path)
    except InvalidClientId:
        assert not valid_id(scope.partition("/")[0])
        return
    assert valid_id(r.user_id) and r.path.endswith("/chat/completions")
