"""Everything one emulator app knows (``app.state.emulator``), shared by all its ports."""

from __future__ import annotations

import itertools
import time
from typing import Any

from starlette.requests import Request

from tests.emulator.cloudflare import Cloudflare
from tests.emulator.memory_store import MemoryStore
from tests.emulator.request_log import RequestLog, render

STREAM_FAULTS = ("close_mid_stream", "endless_stream")
FAULT_MODES = ("slow", "error_500", "error_429", "error_400", "invalid_json", "memory_error") + STREAM_FAULTS
DEFAULT_FAULT_DELAY = {"slow": 1.0, "endless_stream": 0.05}


class EmulatorState:
    """Everything one emulator app knows; lives at ``app.state.emulator``."""

    def __init__(self, chunk_delay: float, chunks: int) -> None:
        self.chunk_delay = chunk_delay
        self.chunks = max(1, chunks)
        self.active_streams = 0  # live bodies are never "reset"
        self.reset()

    def reset(self) -> None:
        self.requests = RequestLog()
        self.store = MemoryStore()
        self.conversations: dict[str, list[str]] = {}  # user id -> x-sm-conversation-id values
        self.cloudflare = Cloudflare()
        self.supermemory_keys: set[str] | None = None  # None: any non-empty key is accepted
        self.fault: dict[str, Any] | None = None  # {"mode", "count", "delay", "after"}
        self.client_disconnects = 0
        self.ids = itertools.count(1)

    @property
    def memories(self) -> dict[str, list[str]]:
        """User id -> the texts it has live in memory, oldest first."""
        return {user: self.store.texts(user) for user in self.store.by_user}

    def key_accepted(self, key: str | None) -> bool:
        return bool(key and key.strip()) and (self.supermemory_keys is None or key in self.supermemory_keys)

    async def record(self, request: Request) -> bytes:
        raw = await request.body()
        self.log(request.scope, raw)
        return raw

    def log(self, scope: dict, body: bytes) -> None:
        """Record one request as it arrived (raw, see ``RequestLog``); ``records`` renders it when read."""
        self.requests.append((scope["method"], scope["path"], scope["query_string"], tuple(scope["headers"]),
                              body, time.time()))

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """The requests from number ``since`` on, as Starlette's Request would show them."""
        return render(self.requests.since(since))

    def take_fault(self) -> dict[str, Any] | None:
        """The pending fault for this request (None: none, or one still sparing requests)."""
        fault = self.fault
        if fault is not None and fault.get("after", 0) > 0:
            fault["after"] -= 1
            return None
        if fault is not None:
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.fault = None
        return fault
