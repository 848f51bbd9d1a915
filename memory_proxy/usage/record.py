"""The usage record: one row per request, written after the answer, never on its path.

Three sources fill a row, each with its own columns, joined by the request id:

- the ingress (status, latency, first byte and event, client id, requested model),
- LiteLLM's usage callback (``litellm_callback.py``) or SDK mode's in-process logger (tokens, cost,
  deployment, provider),
- the egress (Supermemory's ``x-supermemory-*`` answer headers, Cloudflare retries).

Each source hands a dict of its columns to :meth:`UsageLog.put`, which only appends it to a
bounded deque (a full queue drops the record and counts it). A background thread drains
the deque every quarter second and upserts the batch in one transaction, so a failing or
slow store never fails or slows a request, and a batch is written whole or not at all.
No prompt or answer text is ever put here.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
import sys
import threading
import time
from typing import Any

from memory_proxy.config.warmup import is_warmup

log = logging.getLogger("memory_proxy")

# Column -> SQL type. The ingress, LiteLLM and the egress each fill some of them.
COLUMNS: dict[str, str] = {
    "request_id": "TEXT PRIMARY KEY",
    "ts_ms": "BIGINT",  # when the request arrived, ms since the epoch
    "day": "BIGINT",  # its local date (this machine's time zone), days since 1970-01-01
    "client_id": "TEXT",  # the memory id the request was resolved to
    "client_source": "TEXT",  # custom_header | scope_path | pattern | default | refused
    "project": "TEXT",  # the client id when named explicitly (header or /scope/<id>), else ''
    "method": "TEXT",
    "path": "TEXT",
    "api_shape": "TEXT",  # openai_chat | openai_completions | openai_embeddings | openai_responses | ...
    "model_group": "TEXT",  # the model asked for
    "deployment": "TEXT",  # provider/model that served it (LiteLLM)
    "provider": "TEXT",
    "supermemory": "INTEGER",  # 1: a Supermemory-backed group
    "status": "INTEGER",
    "error_code": "TEXT",
    "completed": "INTEGER",  # 0: the client left or the stream was cut
    "streamed": "INTEGER",
    "latency_ms": "DOUBLE PRECISION",
    "ttfb_ms": "DOUBLE PRECISION",  # LiteLLM's answer head arrived
    "first_event_ms": "DOUBLE PRECISION",  # the first body chunk of a streamed answer was relayed
    "latency_bucket": "INTEGER",  # for percentiles in SQL (see bucket())
    "first_event_bucket": "INTEGER",
    "input_tokens": "BIGINT",  # not counting cache reads or writes
    "output_tokens": "BIGINT",
    "cache_read_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "cost_usd": "DOUBLE PRECISION",
    "priced": "INTEGER",  # 0: LiteLLM has no price for the model (cost unknown, not free)
    "litellm_status": "TEXT",  # success | failure: LiteLLM's callback arrived
    "sm_error": "TEXT",
    "sm_context_modified": "INTEGER",
    "sm_chunks_retrieved": "INTEGER",
    "sm_chunks_created": "INTEGER",
    "sm_tokens_processed": "BIGINT",
    "sm_conversation_id": "TEXT",
    "cf_retries": "INTEGER",
    "session_id": "TEXT",  # x-claude-code-session-id
}
# The model asked for: the ingress's part (the one with client_source) sets it whenever it comes;
# LiteLLM's group (a fallback it served, an alias's target) only fills it while it is empty.
ASKED = frozenset({"model_group"})
INGRESS_MARK = "client_source"  # a column only the ingress's part has
EARLIEST = frozenset({"ts_ms"})  # the ingress's arrival, not LiteLLM's later start
ADDED = frozenset({"cf_retries"})  # LiteLLM may retry the egress under the same request id: each part counts
FOLLOWS_TS = frozenset({"day"})  # set with ts_ms, kept or replaced with it
DAY_MS = 86_400_000

API_SHAPES = (("/chat/completions", "openai_chat"), ("/completions", "openai_completions"),
              ("/embeddings", "openai_embeddings"), ("/responses", "openai_responses"),
              ("/messages/count_tokens", "anthropic_count_tokens"), ("/messages", "anthropic_messages"),
              ("/models", "models"))
BUCKET_BASE = math.log(1.1)  # latency buckets 10 % wide


def api_shape(path: str) -> str:
    path = path.rstrip("/")
    for suffix, shape in API_SHAPES:
        if path.endswith(suffix):
            return shape
    return "other"


def bucket(ms: float | None) -> int | None:
    """A latency's bucket: ``bucket_value(bucket(x))`` is within 5 % of x (above 1 ms)."""
    if ms is None:
        return None
    return 0 if ms <= 1 else round(math.log(ms) / BUCKET_BASE)


def bucket_value(b: int) -> float:
    return math.exp(b * BUCKET_BASE) if b > 0 else 1.0


def number(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def from_litellm(payload: dict) -> dict | None:
    """The columns a LiteLLM ``StandardLoggingPayload`` gives; None without a call id.

    Token counts: LiteLLM's ``prompt_tokens`` includes cache reads and writes (for Anthropic it
    adds them to Anthropic's own ``input_tokens``; OpenAI's already includes ``cached_tokens``),
    so the input counted here is what remains: no token is counted twice. The warm-up groups'
    answers are nobody's usage: None for them too."""
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        return None
    if is_warmup(payload.get("model_group")):  # the launcher's own mock requests (warmup.py): no client traffic
        return None
    meta = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    usage = meta.get("usage_object") if isinstance(meta.get("usage_object"), dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    prompt = number(payload.get("prompt_tokens"))
    cache_read = number(usage.get("cache_read_input_tokens")) or number(details.get("cached_tokens"))
    cache_write = number(usage.get("cache_creation_input_tokens"))
    info = payload.get("model_map_information")
    prices = info.get("model_map_value") if isinstance(info, dict) else None
    priced = isinstance(prices, dict) and any(prices.get(k) for k in ("input_cost_per_token", "output_cost_per_token",
                                                                     "input_cost_per_request"))
    cost = payload.get("response_cost")
    cost_usd = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    charged = cost_usd is not None and cost_usd > 0
    failed = payload.get("status") == "failure"
    error = payload.get("error_information") if isinstance(payload.get("error_information"), dict) else {}
    provider = payload.get("custom_llm_provider") if isinstance(payload.get("custom_llm_provider"), str) else None
    model = payload.get("model") if isinstance(payload.get("model"), str) else None
    fields = {
        "request_id": payload.get("litellm_call_id") or payload["id"],
        "litellm_status": "failure" if failed else "success",
        "model_group": payload.get("model_group") if isinstance(payload.get("model_group"), str) else None,
        "deployment": f"{provider}/{model}" if provider and model and not model.startswith(provider + "/")
        else model,
        "provider": provider,
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "output_tokens": number(payload.get("completion_tokens")),
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cost_usd": cost_usd,
        # A failure before any provider (an unknown model: no price map) says nothing of a price:
        # left empty, its cost is nil when the client got an error, unknown when it got an answer.
        "priced": None if failed and not charged and not provider else 1 if priced or charged else 0,
    }
    if isinstance(payload.get("startTime"), (int, float)):
        fields["ts_ms"] = int(payload["startTime"] * 1000)
    if error.get("error_code"):
        fields["error_code"] = str(error["error_code"])[:64]
    return {k: v for k, v in fields.items() if v is not None}


# The egress's own sm_error for a request Cloudflare refused twice (not an answer of Supermemory's).
CLOUDFLARE_REFUSED = "Cloudflare refused twice (error code: 1200)"
UNREACHABLE = "the egress could not reach Supermemory"  # + ": <the failure's name>"
SM_HEADERS = {  # Supermemory's documented diagnostic headers -> (column, parse)
    "x-supermemory-error": ("sm_error", lambda v: v[:500]),
    "x-supermemory-context-modified": ("sm_context_modified", lambda v: 1 if v.strip().lower() == "true" else 0),
    "x-supermemory-chunks-retrieved": ("sm_chunks_retrieved", int),
    "x-supermemory-chunks-created": ("sm_chunks_created", int),
    "x-supermemory-tokens-processed": ("sm_tokens_processed", int),
    "x-supermemory-conversation-id": ("sm_conversation_id", lambda v: v[:128]),
}


def from_supermemory(request_id: str, headers, cloudflare_retries: int) -> dict:
    """The columns Supermemory's answer headers give (the egress's part of the row)."""
    fields: dict[str, Any] = {"request_id": request_id, "cf_retries": cloudflare_retries}
    for name, (column, parse) in SM_HEADERS.items():
        value = headers.get(name)
        if value is not None:
            try:
                fields[column] = parse(value)
            except ValueError:
                pass
    return fields


def local_day(ts_ms: int) -> int:
    """Days since 1970-01-01 of the local date at ``ts_ms``."""
    return (ts_ms + _utc_offset_ms(ts_ms // 3_600_000)) // DAY_MS


@functools.lru_cache(maxsize=4096)
def _utc_offset_ms(hour: int) -> int:
    """The local UTC offset during an hour since the epoch (time zones change on whole quarter
    hours at most, DST on whole hours)."""
    return time.localtime(hour * 3600).tm_gmtoff * 1000


def derive(fields: dict, backed: frozenset[str]) -> dict:
    """Columns computed from others, in the writer (off the request's path)."""
    if "path" in fields:
        fields["api_shape"] = api_shape(fields["path"])
    if "client_source" in fields:
        fields["project"] = fields["client_id"] if fields["client_source"] in ("custom_header", "scope_path") else ""
    if "model_group" in fields and "client_source" in fields:
        fields["supermemory"] = 1 if fields["model_group"] in backed else 0
    if "latency_ms" in fields:
        fields["latency_bucket"] = bucket(fields["latency_ms"])
    if fields.get("first_event_ms") is not None:
        fields["first_event_bucket"] = bucket(fields["first_event_ms"])
    return fields


WRITER_NICE = 19  # the lowest CPU priority a thread may give itself


def yield_cpu() -> None:
    """Put the calling thread last in the CPU's queue (Linux, where the nice value is a
    thread's own). The writer then runs in the cores' spare time: when they are busy, the event
    loop goes first and the queue takes up the backlog until they are not. Elsewhere, nothing."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except OSError:
            pass


class UsageLog:
    """The bounded queue and its background writer thread (one per running app)."""

    def __init__(self, open_store, *, capacity: int, backed: frozenset[str] = frozenset(),
                 interval: float = 0.25, prune_every: float = 600.0, retention_days: int = 90,
                 max_bytes: int | None = None, slow_after: float = 10.0) -> None:
        self._open_store = open_store  # () -> store; called (again) in the writer thread
        self._queue: collections.deque[dict] = collections.deque()
        self.capacity = capacity
        self.backed = backed
        self.interval = interval
        self.prune_every = prune_every
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self.dropped = 0  # records the full queue could not take
        self._pending = 0  # records the writer holds for the store (a failing store keeps them)
        self.written = 0
        self.failures = 0  # batches the store refused (kept and retried while the queue has room)
        self.last_error: str | None = None
        self.store_ok = False
        self.slow_after = slow_after  # a store that has not answered for this long is reported as failing
        self._busy_since: float | None = None  # when the writer's current call to the store began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)

    # --- the request's side: an append, nothing else ---------------------------------

    def __len__(self) -> int:
        """Records waiting for the writer."""
        return len(self._queue)

    def waiting(self) -> int:
        """Records not yet in the store: queued, or held by the writer while the store fails."""
        return len(self._queue) + self._pending

    def put(self, fields: dict) -> None:
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            return
        self._queue.append(fields)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> UsageLog:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer."""
        self._stop.set()
        self._thread.join(timeout)

    def status(self) -> dict:
        """``/health``'s and ``status``'s view; ``queued``: every record not yet in the store,
        the batch the writer holds while the store fails included."""
        store_ok, last_error = self.store_ok, self.last_error
        busy = self._busy_since
        if busy is not None and (waited := time.monotonic() - busy) > self.slow_after:  # slow, or hung
            store_ok, last_error = False, f"the store has not answered for {waited:.0f} s"
        return {"enabled": True, "store_ok": store_ok, "written": self.written, "queued": self.waiting(),
                "dropped": self.dropped, "failed_batches": self.failures, "last_error": last_error}

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        yield_cpu()
        store = None
        pending: list[dict] = []
        next_prune = 0.0
        while True:
            stopping = self._stop.wait(self.interval)
            while self._queue and len(pending) < 5000:
                pending.append(derive(self._queue.popleft(), self.backed))
            self._pending = len(pending)
            self._busy_since = time.monotonic()
            try:
                if store is None:
                    store = self._open_store()
                if pending:
                    store.upsert(pending)
                    self.written += len(pending)
                    pending = []
                    self._pending = 0
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_every
                    store.prune(self.retention_days, self.max_bytes)
                self.store_ok = True
                self.last_error = None
            except Exception as exc:  # disk full, database down: keep the batch, reconnect next time
                self._busy_since = None
                self.failures += 1
                if self.store_ok or self.last_error is None:
                    log.warning("usage store: %s: %s (records wait in the queue; retrying)", type(exc).__name__, exc)
                self.store_ok = False
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if store is not None:
                    try:
                        store.close()
                    except Exception:
                        pass
                    store = None
                overflow = len(pending) + len(self._queue) - self.capacity
                if overflow > 0:  # the store is gone for long: the oldest pending records go first
                    del pending[:overflow]
                    self.dropped += overflow
                self._pending = len(pending)
                if stopping:  # still failing at shutdown: what the writer holds is lost, and counted
                    lost = len(pending) + len(self._queue)
                    if lost:
                        self.dropped += lost
                        self._pending = 0
                        log.warning("usage store: %d record(s) not written at shutdown (%s)", lost, self.last_error)
                    return
                self._stop.wait(min(5.0, self.interval * 8))
                continue
            self._busy_since = None
            if stopping and not self._queue:
                store.close()
                return
