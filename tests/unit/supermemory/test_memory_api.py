"""Turning the Memory API's failures into one message: the key never in it, Retry-After kept;
and the memory ids that may go into a request."""

from __future__ import annotations

import httpx

from memory_proxy.server.memory_page import _failed
from memory_proxy.supermemory.memory_api import Session, valid_memory_id

KEY = "sm-unit-secret-key-0123456789"


class Refused(Exception):
    """What the SDK raises for an answer with a status (its APIStatusError's attributes)."""

    def __init__(self, status: int, body, headers: dict | None = None) -> None:
        super().__init__(status)
        self.status_code, self.body, self.headers = status, body, headers or {}


def caller() -> Session:
    return Session(base_url="http://127.0.0.1:9", secret=KEY, retry_delay=0)


def test_the_key_is_taken_out_before_the_text_is_cut():
    body = {"error": "x" * 190 + " key " + KEY + " and more"}  # the key straddles the 200-character cut
    error = caller()._failure(Refused(400, body), 1)
    assert KEY[:4] not in str(error) and "***" in str(error)


def test_supermemorys_retry_after_reaches_the_page():
    error = caller()._failure(Refused(429, "slow down", {"Retry-After": "17"}), 1)
    assert error.kind == "rate_limited" and error.retry_after == "17" and "retry in 17 s" in str(error)
    answer = _failed(error)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "17"
    assert answer.headers["cache-control"] == "no-store"
    assert _failed(caller()._failure(Refused(429, "slow down"), 1)).headers["retry-after"] == "5"


def test_memory_ids_that_may_go_into_a_request_path():
    assert all(valid_memory_id(v) for v in ("mem_000001", "Ab-9_x", "x" * 128))
    assert not any(valid_memory_id(v) for v in ("", "../x", "a/b", "a?b", "a b", "x" * 129, None, 5, "%2e%2e"))


def test_a_transport_failure_names_the_server_not_the_key():
    error = caller()._failure(httpx.ConnectError("refused"), 1)
    assert error.kind == "unreachable" and "127.0.0.1:9" in str(error) and KEY not in str(error)


def test_a_transport_failure_masks_a_password_in_the_base_url():
    session = Session(base_url="http://user:URLPASSWORD@127.0.0.1:9", secret=KEY, retry_delay=0)
    for exc in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):
        error = session._failure(exc, 1)
        assert "URLPASSWORD" not in str(error) and "http://user:****@127.0.0.1:9" in str(error)
