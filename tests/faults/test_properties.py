"""Property-based tests (hypothesis) of the rules every request passes: client-id resolution,
header filtering in both directions, the egress's idea of where a path may go, and the JSON
body cleaning. These need no process; every generated example counts as a bad input tried."""

from __future__ import annotations

import json
import re

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memory_proxy.config.litellm_checks import FALLBACK_KEYS
from memory_proxy.config.model import CLIENT_ID_RE, HeaderPattern, UserIdMappings
from memory_proxy.server import headers as h
from memory_proxy.server.egress import target_url
from memory_proxy.server.ingress import clean_json_body
from memory_proxy.server.routing import InvalidClientId, resolve, split_scope, valid_id

from .conftest import bad_input

CUSTOM = "x-memory-user-id"
MAPPINGS = UserIdMappings(CUSTOM, (
    HeaderPattern("user-agent", "^OpenAIClientImpl/Java", "pycharm-ai", re.compile("^OpenAIClientImpl/Java", re.I)),
    HeaderPattern("user-agent", "^claude-cli/", "claude-cli", re.compile("^claude-cli/", re.I)),
    HeaderPattern("x-client", "tool", "tool-id", re.compile("tool", re.I)),
), "default-dev")
PATTERN_IDS = {"pycharm-ai", "claude-cli", "tool-id"}
RUNS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Header values as an ASGI server hands them over: latin-1 text without CR/LF/NUL.
values = st.text(st.characters(min_codepoint=1, max_codepoint=255, blacklist_characters="\r\n"), max_size=60)
ids_or_junk = st.one_of(st.from_regex(CLIENT_ID_RE, fullmatch=True), values,
                        st.text(min_size=129, max_size=140, alphabet="ab"),
                        st.sampled_from(["", " ", "a b", "a\tb", "../x", "a/b", "%41", "é", "a" * 128, "a" * 129]))
forged_names = st.one_of(
    st.from_regex(r"x-sm-[a-z0-9-]{0,12}", fullmatch=True),
    st.from_regex(r"x-supermemory-[a-z0-9-]{0,12}", fullmatch=True),
    st.sampled_from(["x-sm-user-id", "x-supermemory-user-id", "x-supermemory-api-key", "x-sm-conversation-id",
                     "x-memory-proxy-egress-secret", "authorization", "x-api-key", "api-key", "host",
                     "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade",
                     "proxy-authorization", "x-request-id", CUSTOM]))
any_names = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), forged_names)
header_lists = st.lists(st.tuples(any_names, values), max_size=20)
paths = st.one_of(
    st.sampled_from(["/v1/chat/completions", "/v1/messages", "/v1/models", "/"]),
    st.builds(lambda s, rest: f"/scope/{s}{rest}", ids_or_junk,
              st.sampled_from(["/v1/chat/completions", "/v1/messages", "", "/"])),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(lambda t: "/" + t))


@RUNS
@given(st.dictionaries(any_names, values, max_size=12), st.one_of(st.none(), ids_or_junk), paths)
@example({}, None, "/scope/./v1/chat/completions")  # dots alone: refused, though CLIENT_ID_RE matches
@example({}, None, "/scope/../v1/messages")
@example({}, "..", "/v1/models")
def test_resolution_is_total_explicit_first_and_never_moved_by_forged_headers(headers, custom, path):
    """Any headers and path: a valid id or a refusal (400), never an exception; an explicit
    id wins as given; forged memory headers and credentials change nothing."""
    bad_input("property: client-id resolution")
    headers = dict(headers)
    headers.pop(CUSTOM, None)
    if custom is not None:
        headers[CUSTOM] = custom
    scope, stripped = split_scope(path)
    try:
        r = resolve(MAPPINGS, headers, path)
    except InvalidClientId:
        if custom is not None:
            assert not valid_id(custom.strip())
        else:
            assert scope is not None and not valid_id(scope)
        return
    assert valid_id(r.user_id)
    assert r.path == stripped
    if custom is not None:
        assert (r.user_id, r.source) == (custom.strip(), "custom_header")
    elif scope is not None:
        assert (r.user_id, r.source) == (scope, "scope_path")
    else:
        assert r.user_id in PATTERN_IDS | {"default-dev"}
    without_forged = {k: v for k, v in headers.items()
                      if not h.is_memory_header(k) and k not in h.CREDENTIAL_HEADERS}
    assert resolve(MAPPINGS, without_forged, path).user_id == r.user_id


@RUNS
@given(header_lists, st.from_regex(CLIENT_ID_RE, fullmatch=True),
       st.lists(any_names, max_size=4), st.one_of(st.none(), values))
def test_what_litellm_receives_has_exactly_our_memory_headers(headers, user_id, listed, session):
    """Whatever a client sends (forged memory headers, credentials, hop-by-hop headers, a
    Connection header naming others): LiteLLM gets our id once, our key once, and nothing
    of theirs that could pick a memory or authenticate elsewhere."""
    bad_input("property: ingress header filtering")
    headers = list(headers) + [("connection", ", ".join(listed))]
    if session is not None:
        headers.append((h.CLAUDE_SESSION_HEADER, session))
    out = h.ingress_request_headers(headers, custom_header=CUSTOM, user_id=user_id, master_key="sk-master",
                                    request_id="rid")
    names = [n for n, _ in out]
    assert [v for n, v in out if n == h.USER_ID_HEADER] == [user_id]
    memory = {n for n in names if h.is_memory_header(n)}
    assert memory <= {h.USER_ID_HEADER, h.CONVERSATION_HEADER}
    conversation = [v for n, v in out if n == h.CONVERSATION_HEADER]
    assert len(conversation) <= 1 and all(len(v) <= 128 and v.isprintable() for v in conversation)
    assert [v for n, v in out if n in h.CREDENTIAL_HEADERS] == ["Bearer sk-master"]
    assert CUSTOM not in names and h.EGRESS_SECRET_HEADER not in names
    assert [v for n, v in out if n == "x-request-id"] == ["rid"]
    assert not set(names) & (h.HOP_BY_HOP | {"host", "content-length"})
    listed_names = {t.strip().lower() for item in listed for t in item.split(",") if t.strip()}
    assert not set(names) & (listed_names - {"authorization", h.USER_ID_HEADER, "x-request-id",
                                             h.CONVERSATION_HEADER})
    assert h.as_bytes(out)  # every value is sendable: latin-1 text turns into its bytes


@RUNS
@given(header_lists, st.from_regex(CLIENT_ID_RE, fullmatch=True), st.one_of(st.none(), st.text(max_size=20)))
def test_what_supermemory_receives_names_exactly_one_user(headers, user_id, api_key):
    bad_input("property: egress header filtering")
    out = h.egress_request_headers(headers, user_id=user_id, api_key=api_key)
    assert [v for n, v in out if n == "x-sm-user-id"] == [user_id]
    assert [v for n, v in out if n == "x-supermemory-api-key"] == ([api_key] if api_key else [])
    names = {n for n, _ in out}
    assert h.EGRESS_SECRET_HEADER not in names and h.USER_ID_HEADER not in names
    assert {n for n in names if h.is_memory_header(n)} <= {"x-sm-user-id", "x-supermemory-api-key",
                                                           "x-sm-conversation-id"}


path_chars = st.sampled_from(list("abc/.%2eEfF5c@:?#\\ \t\r\n") + ["%2e", "%2E", "%2f", "%5c", "..", "//", "%00",
                                                                   "https://evil.example", "@evil.example",
                                                                   "%40", "\u00e9", "%", "%%", "?userId=x"])
BASES = ["https://api.supermemory.ai", "http://127.0.0.1:9000", "http://127.0.0.1:9000/prefix"]


@RUNS
@given(st.lists(path_chars, max_size=25).map("".join), st.sampled_from(BASES),
       st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
def test_egress_never_leaves_the_configured_host(rest, base, query):
    """Any path after ``/_egress``: refused (None) or a URL on the configured scheme, host and
    port, under its path, without dot segments and without a ``userId`` parameter."""
    bad_input("property: egress path containment")
    raw = ("/" + rest).encode("utf-8")
    try:
        url = target_url(base, raw, query.encode())
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return  # refused by URL parsing: nothing is sent
    if url is None:
        return
    b = httpx.URL(base)
    assert (url.scheme, url.host, url.port) == (b.scheme, b.host, b.port)
    assert url.raw_path.startswith(b.raw_path.rstrip(b"/") + b"/")
    from urllib.parse import unquote
    segments = unquote(url.path).split("/")
    assert ".." not in segments and "." not in segments
    assert "userId" not in dict(url.params)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children,
                                                                                max_size=4)),
    max_leaves=20)


@RUNS
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), json_values, st.booleans())
def test_json_bodies_lose_extra_headers_and_nothing_else(body, extra, with_extra):
    bad_input("property: JSON body cleaning")
    if with_extra:
        body = {**body, "extra_headers": extra}
    sent, parsed = clean_json_body(json.dumps(body).encode())
    assert "extra_headers" not in json.loads(sent)
    assert json.loads(sent) == {k: v for k, v in body.items() if k != "extra_headers"} == parsed


@RUNS
@given(st.one_of(st.sampled_from(["memory/x", "plain"]), json_values), st.sets(st.sampled_from(FALLBACK_KEYS)),
       json_values)
def test_fallbacks_are_dropped_from_requests_to_supermemory_backed_groups_only(model, keys, value):
    bad_input("property: JSON body cleaning")
    body = {"model": model, "messages": [], **dict.fromkeys(keys, value)}
    sent, parsed = clean_json_body(json.dumps(body).encode(), frozenset({"memory/x"}))
    kept = {k: v for k, v in body.items() if model != "memory/x" or k not in FALLBACK_KEYS}
    assert json.loads(sent) == kept == parsed


@RUNS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_json_body_parse_or_are_refused_with_a_value_error(raw):
    bad_input("property: arbitrary JSON body bytes")
    try:
        sent, parsed = clean_json_body(raw)
    except ValueError as exc:
        assert str(exc).startswith("request body is not valid JSON")
        return
    assert not isinstance(parsed, dict) or "extra_headers" not in parsed
    assert isinstance(sent, bytes)
