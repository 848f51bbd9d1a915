"""What happened to one request, as the ingress (both backends) saw it when its answer ended.

One small object per request that passed the front door's first checks, handed to
``Runtime.finish``, which counts it, logs its line (``log_format``: text or JSON), observes it
in the metrics, ends its span and queues the ingress's half of its usage record
(``usage.py``). A request refused before a client id was known has ``client_source``
``"refused"`` and an empty ``client_id``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger("memory_proxy")


def new_request_id() -> str:
    """32 hex digits: the arrival in ms since the epoch (12), then 80 random bits (20).

    Ids that grow with time keep the usage record's key growing at its end: with random ids
    each write lands on a random page of a large index, and the record costs twice the CPU."""
    return ((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)).hex()


@dataclass(slots=True)
class Outcome:
    request_id: str
    client_id: str
    resolved_by: str  # routing.Resolution.source: custom_header | scope_path | pattern | default | refused
    method: str
    path: str  # without any /scope/<id> prefix
    model: str | None  # as requested in the body (a model group or alias); None: no JSON body or no model
    status: int
    duration_s: float
    backend: str = "binary"  # or "sdk"
    streamed: bool = False  # the answer was an event stream
    completed: bool = True  # False: cut (client gone, upstream broke, timeouts.total)
    first_event_s: float | None = None  # streams: from arrival to the first answer chunk
    ttfb_s: float | None = None  # from arrival to LiteLLM's answer head
    error: str | None = None  # the exception's name when the proxy answered for a failed upstream
    error_code: str | None = None  # the OpenAI-style error body's code, when the proxy answered
    session_id: str | None = None  # x-claude-code-session-id
    span: object | None = None  # the request's server span when tracing is on (ended by Runtime.finish)
    ended_at: float = field(default_factory=time.time)

    @property
    def failed(self) -> bool:
        return self.status >= 400 or not self.completed

    def log(self) -> None:
        """The request's log line: the text line as it always was, the fields for the JSON format."""
        if self.error is not None:
            log.warning("client=%s %s %s -> %s (%s%s)", self.client_id, self.method, self.path, self.status,
                        self.error, ", sdk" if self.backend == "sdk" else "", extra={"outcome": self})
        else:
            log.info("client=%s %s %s -> %s %.1f ms%s%s", self.client_id, self.method, self.path, self.status,
                     self.duration_s * 1000, "" if self.completed else " (stream cut)",
                     " (sdk)" if self.backend == "sdk" else "", extra={"outcome": self})

    def usage_fields(self) -> dict:
        """The ingress's columns of the usage record (``usage.COLUMNS``). ``error_code`` only
        when the proxy answered with one: LiteLLM's report also sets it, and may come first (in
        SDK mode a failure is reported before the answer), so an empty one must not replace it."""
        fields = {"request_id": self.request_id, "client_id": self.client_id, "client_source": self.resolved_by,
                  "path": self.path, "method": self.method, "model_group": self.model, "status": self.status,
                  "ts_ms": int((self.ended_at - self.duration_s) * 1000), "completed": 1 if self.completed else 0,
                  "streamed": 1 if self.streamed else 0, "latency_ms": self.duration_s * 1000,
                  "ttfb_ms": self.ttfb_s * 1000 if self.ttfb_s is not None else None,
                  "first_event_ms": self.first_event_s * 1000 if self.first_event_s is not None else None,
                  "session_id": self.session_id}
        if self.error_code is not None:
            fields["error_code"] = self.error_code
        return fields
