"""The memory proxy's log lines on stderr (which the launcher's ``logs`` reads): logging's
default text line, or one JSON object per line (``memory_proxy.log_format: json``)."""

from __future__ import annotations

import json
import logging
import sys
import time


class TextFormatter(logging.Formatter):
    """logging's default line, with the date and time rendered once a second rather than for
    every line (``time.strftime`` is most of the cost of the line logged per request)."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._stamp, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``
    and, for a request's line, its fields (``outcome.Outcome``): ``request_id``, ``client_id``,
    ``resolved_by``, ``method``, ``path``, ``model``, ``status``, ``duration_ms``, ``streamed``,
    ``completed``, ``backend``, and ``first_event_ms``/``error``/token and cost fields when known."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = {"time": f"{self._stamp}.{int(record.msecs):03d}Z", "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        outcome = getattr(record, "outcome", None)
        if outcome is not None:
            line.update(request_id=outcome.request_id, client_id=outcome.client_id,
                        resolved_by=outcome.resolved_by, method=outcome.method, path=outcome.path,
                        model=outcome.model, status=outcome.status, duration_ms=round(outcome.duration_s * 1000, 1),
                        streamed=outcome.streamed, completed=outcome.completed, backend=outcome.backend)
            if outcome.first_event_s is not None:
                line["first_event_ms"] = round(outcome.first_event_s * 1000, 1)
            for name in ("error", "error_code", "session_id"):
                if (value := getattr(outcome, name)) is not None:
                    line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup(log_format: str = "text") -> None:
    """Log INFO and up to stderr in ``log_format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is ours; httpx's repeats it
    # The formats name none of the caller, thread or process: skip collecting them (the logging
    # HOWTO's "Optimization"), about a third of the cost of the line logged per request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def uvicorn_settings(log_format: str) -> dict:
    """``uvicorn.run`` arguments: in JSON, uvicorn's own lines go through the root logger's
    format above instead of the text format uvicorn configures for itself."""
    return {"log_config": None} if log_format == "json" else {}
