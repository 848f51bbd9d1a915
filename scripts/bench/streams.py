"""Streamed answers: a raw client that timestamps each SSE event as it arrives, how much later
than on a reference path each chunk reaches the client, and what waking from idle costs."""

from __future__ import annotations

import re
import socket
import time

from .common import med
from .load import Endpoint, raw_request


class StreamClient:
    """A raw keep-alive HTTP/1.1 client that timestamps every SSE event as it arrives."""

    def __init__(self, endpoint: Endpoint, stream: bool = True) -> None:
        self.endpoint = endpoint
        self.request = raw_request(endpoint, stream=stream)
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock:
            self.sock.close()
            self.sock = None

    def once(self) -> dict:
        """One answer (see ``_once``); anything but a 200 stops the run."""
        reused = self.sock is not None
        try:
            sample = self._once()
        except (ConnectionError, OSError):
            self.close()
            if not reused:
                raise
            sample = self._once()  # the server had closed the idle connection: once more, on a new one
        if sample["status"] != 200:
            raise RuntimeError(f"{self.endpoint.name} answered {sample['status']}")
        return sample

    def _once(self) -> dict:
        """One streamed answer: when its first body byte came, and for each SSE event when it
        arrived and (from the emulator's ``emulator_sent`` stamp, when it survives the path)
        when the upstream sent it. One clock: time.monotonic() is CLOCK_MONOTONIC, machine-wide."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.endpoint.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        start = time.monotonic()
        sock.sendall(self.request)
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the headers")
            raw += data
        now = time.monotonic()
        head, rest = raw.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        match = re.search(rb"content-length:\s*(\d+)", head.lower())
        remaining = int(match.group(1)) if match else None
        pending, text, first_byte, done = rest, b"", None, False
        arrived: list[float] = []
        sent: list[float | None] = []
        while True:
            body = b""
            if chunked:
                while True:
                    line_end = pending.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(pending[:line_end].split(b";")[0], 16)
                    if len(pending) < line_end + 2 + size + 2:
                        break
                    body += pending[line_end + 2:line_end + 2 + size]
                    pending = pending[line_end + 2 + size + 2:]
                    if size == 0:
                        done = True
                        break
            else:
                body, pending = pending, b""
                remaining = (remaining or 0) - len(body)
                done = remaining <= 0
            if body:
                if first_byte is None:
                    first_byte = now - start
                text += body.replace(b"\r\n", b"\n")
                while b"\n\n" in text:
                    event, text = text.split(b"\n\n", 1)
                    if not event.strip():
                        continue
                    arrived.append(now)
                    stamp = re.search(rb'"emulator_sent": ?([0-9.]+)', event)
                    sent.append(float(stamp.group(1)) if stamp else None)
            if done:
                break
            data = sock.recv(65536)
            now = time.monotonic()
            if not data:
                self.close()
                break
            pending += data
        transit = [a - s_ for a, s_ in zip(arrived, sent, strict=True) if s_ is not None]  # [DONE] has no stamp
        return {"status": status, "first_byte": first_byte, "events": [t - start for t in arrived], "transit": transit}


def idle_latency(endpoint: Endpoint, count: int, pause: float) -> dict:
    """Median time to a non-streamed answer's first body byte (raw client, one keep-alive
    connection), back to back and with ``pause`` s of idle before each request.

    A stream's first event comes after the previous stream's paced chunks, when every process
    on the path has been asleep for a chunk delay; waking them costs more than the answer
    itself on this kind of VM. This shows that cost apart from streaming."""
    client = StreamClient(endpoint, stream=False)
    try:
        warm = [client.once()["first_byte"] for _ in range(count)]
        idle = []
        for _ in range(count):
            time.sleep(pause)
            idle.append(client.once()["first_byte"])
    finally:
        client.close()
    return {"warm_ms": med(warm) * 1000, "idle_ms": med(idle) * 1000}


def event_offsets(samples: list[dict]) -> list[list[float]]:
    """Per stream: each event's arrival relative to the stream's first event (hop latency removed)."""
    return [[t - s["events"][0] for t in s["events"]] for s in samples if s["events"]]


def chunk_delays(samples: list[dict], reference: list[dict]) -> dict:
    """How much later than on the reference path each chunk reaches the client.

    With the emulator's send stamps (they survive a byte-for-byte relay): per chunk position,
    the median over streams of (arrival - sent), minus the same on the reference path; the
    target is judged on the largest of these (a chunk held back shows up at its position
    in every stream), and the worst single chunk is shown beside the reference's worst, as
    a measure of the machine's noise. Without stamps (LiteLLM re-encodes the chunks): each
    chunk's arrival relative to the stream's first chunk, compared the same way."""
    def stamped(group: list[dict]) -> bool:
        return bool(group) and all(s["transit"] for s in group)

    if stamped(samples) and stamped(reference):
        mine, ref, method = [s["transit"] for s in samples], [s["transit"] for s in reference], "send stamps"
    else:
        mine, ref, method = event_offsets(samples), event_offsets(reference), "relative to the first chunk"
    n = min(min(map(len, mine), default=0), min(map(len, ref), default=0))
    first = 0 if method == "send stamps" else 1
    per_position = [med([o[i] for o in mine]) - med([o[i] for o in ref]) for i in range(first, n)]
    base = med([o[i] for o in ref for i in range(first, n)])
    return {"method": method, "chunks": n, "max_ms": max(per_position, default=float("nan")) * 1000,
            "per_position_ms": [round(x * 1000, 3) for x in per_position],
            "worst_single_ms": (max((o[i] for o in mine for i in range(first, n)), default=float("nan")) - base) * 1000,
            "reference_worst_single_ms": (max((o[i] for o in ref for i in range(first, n)), default=float("nan"))
                                          - base) * 1000}
