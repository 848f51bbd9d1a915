"""What happened to one request, as the ingress (both backends) saw it when its answer ended.

One small object per relayed request, handed to ``Runtime.finish``, which counts it, logs its
line (``log_format``: text or JSON) and observes it in the metrics. It is the one place later
figures join: the usage record (tokens, cost) fills the optional fields when it is known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("memory_proxy")


@dataclass(slots=True)
class Outcome:
    request_id: str
    client_id: str
    resolved_by: str  # routing.Resolution.source: custom_header | scope_path | pattern | default
    method: str
    path: str  # without any /scope/<id> prefix
    model: str | None  # as requested in the body (a model group or alias); None: no JSON body or no model
    status: int
    duration_s: float
    backend: str = "binary"  # or "sdk"
    streamed: bool = False  # the answer was an event stream
    completed: bool = True  # False: cut (client gone, upstream broke, timeouts.total)
    first_event_s: float | None = None  # streams: from arrival to the first answer byte
    error: str | None = None  # the exception's name when the proxy answered for a failed upstream
    # Optional inputs, None until something knows them (the usage record, when merged).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    span: object | None = None  # the request's server span when tracing is on (ended by Runtime.finish)

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
