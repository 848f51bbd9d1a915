"""Header rules for both directions of the proxy.

Header lists are ``list[tuple[str, str]]`` with lower-case names, as Starlette and httpx
hand them out, so repeated headers (``set-cookie``) survive.
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9110 section 7.6.1 plus the de-facto ones; never relayed by a proxy.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
MEMORY_PREFIXES = ("x-sm-", "x-supermemory-")
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
# Upstream answer headers a client never sees: the proxy's own server and date, LiteLLM's CORS
# answer (``*`` for every origin; the front door answers listed origins itself) and the
# deployment's api_base, which names the egress.
NOT_RELAYED = frozenset({
    "date", "server", "x-litellm-model-api-base",
    "access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers",
    "access-control-allow-methods", "access-control-expose-headers", "access-control-max-age",
    "access-control-allow-private-network",
})

USER_ID_HEADER = "x-supermemory-user-id"  # ingress -> LiteLLM -> egress
CONVERSATION_HEADER = "x-supermemory-conversation-id"  # ingress -> LiteLLM -> egress
EGRESS_SECRET_HEADER = "x-memory-proxy-egress-secret"  # set by the generated LiteLLM config
CLAUDE_SESSION_HEADER = "x-claude-code-session-id"
CALL_ID_HEADER = "x-litellm-call-id"  # LiteLLM names its call (and its usage callback) after it


def connection_listed(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Names that a ``Connection`` header declares hop-by-hop for this message."""
    names: set[str] = set()
    for name, value in headers:
        if name == "connection":
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


def is_memory_header(name: str) -> bool:
    return name.startswith(MEMORY_PREFIXES)


def strip_transport(headers: Iterable[tuple[str, str]], also: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, ``host`` and ``content-length`` (the sender sets them anew)."""
    headers = list(headers)
    drop = HOP_BY_HOP | connection_listed(headers) | {"host", "content-length"} | set(also)
    return [(n, v) for n, v in headers if n not in drop]


def ingress_request_headers(
    headers: Iterable[tuple[str, str]], *, custom_header: str, user_id: str, master_key: str, request_id: str,
) -> list[tuple[str, str]]:
    """What LiteLLM receives: client headers minus memory/credential/internal ones, plus ours."""
    headers = list(headers)
    session = next((v for n, v in headers if n == CLAUDE_SESSION_HEADER), None)
    kept = [
        (n, v) for n, v in strip_transport(headers, also=CREDENTIAL_HEADERS | {custom_header, EGRESS_SECRET_HEADER,
                                                                                  "x-request-id", CALL_ID_HEADER})
        if not is_memory_header(n)
    ]
    kept.append(("authorization", f"Bearer {master_key}"))
    kept.append((USER_ID_HEADER, user_id))
    kept.append(("x-request-id", request_id))
    kept.append((CALL_ID_HEADER, request_id))  # joins LiteLLM's usage figures to our record
    if session and len(session) <= 128 and session.isprintable():
        kept.append((CONVERSATION_HEADER, session))
    return kept


def egress_request_headers(
    headers: Iterable[tuple[str, str]], *, user_id: str, api_key: str | None,
) -> list[tuple[str, str]]:
    """What Supermemory receives: LiteLLM's headers with ours turned into Supermemory's."""
    headers = list(headers)
    conversation = next((v for n, v in headers if n == CONVERSATION_HEADER), None)
    kept = [(n, v) for n, v in strip_transport(headers, also={EGRESS_SECRET_HEADER}) if not is_memory_header(n)]
    kept.append(("x-sm-user-id", user_id))
    if api_key:
        kept.append(("x-supermemory-api-key", api_key))
    if conversation:
        kept.append(("x-sm-conversation-id", conversation))
    return kept


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers fit to relay: body bytes are passed raw, so a
    ``content-length`` stays true unless the upstream used a transfer coding."""
    headers = list(headers)
    chunked = any(n == "transfer-encoding" for n, _ in headers)
    drop = HOP_BY_HOP | connection_listed(headers) | NOT_RELAYED
    if chunked:
        drop = drop | {"content-length"}
    return [(n, v) for n, v in headers if n not in drop]


def media_type(content_type: str) -> str:
    """A content-type's media type, without its parameters: ``application/json; charset=utf-8`` ->
    ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def as_bytes(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as the bytes they arrived as (ASGI servers decode them as latin-1), so a
    non-ASCII value (``user-agent: José's IDE``) is relayed instead of failing httpx's ASCII check."""
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
