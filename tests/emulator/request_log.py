"""The record of every request an emulator process received (``GET /_emulator/requests``)."""

from __future__ import annotations

import marshal
from array import array
from collections.abc import Iterable
from typing import Any

from starlette.requests import cookie_parser

from tests.emulator.common import parse_body


class RequestLog:
    """Every request an emulator process received, as raw tuples packed into one buffer.

    A list of records, however plain, makes each full garbage collection touch every record
    (the list is traversed element by element): after a few hundred thousand requests that is
    a pause of 20-50 ms, which the benchmark then measured as the tail latency of whatever
    sits in front of the emulator. A ``bytearray`` and an ``array`` hold no Python objects,
    so there is nothing per record for the collector to visit, and they take a fraction of the
    memory."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")

    def append(self, record: tuple) -> None:
        self._data += marshal.dumps(record)
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def since(self, first: int) -> Iterable[tuple]:
        data, ends = self._data, self._ends
        start = ends[first - 1] if 0 < first <= len(ends) else 0
        for end in ends[first:]:
            yield marshal.loads(data[start:end])
            start = end


def render(entries: Iterable[tuple]) -> list[dict[str, Any]]:
    """Raw entries of a ``RequestLog`` as Starlette's Request would show them."""
    rendered = []
    for method, path, query, headers, body, when in entries:
        cookies: dict[str, str] = {}
        for name, value in headers:
            if name == b"cookie":
                cookies.update(cookie_parser(value.decode("latin-1")))
        rendered.append({
            "method": method,
            "path": path,  # decoded, with any "//" intact
            "query": query.decode("latin-1"),
            "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers},
            "body": parse_body(body),
            "cookies": cookies,
            "time": when,
        })
    return rendered
