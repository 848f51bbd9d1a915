"""What Supermemory remembers, per user id, and how the emulated models use it."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

ASKS_NAME = re.compile(r"what is my name", re.I)
TELLS_NAME = re.compile(r"my name is (\w+)", re.I)


class MemoryStore:
    """What Supermemory remembers, per user id: the router's ``x-sm-user-id`` is the Memory
    API's namespace (v3/v4 called it a container tag), so both read and change one store.

    Each record is one memory (here: one user text), in recall order, oldest first; a
    forgotten one stays in the list, flagged, as Supermemory keeps its audit history."""

    def __init__(self) -> None:
        self.by_user: dict[str, list[dict[str, Any]]] = {}
        self.seq = itertools.count(1)

    def live(self, user: str) -> list[dict[str, Any]]:
        return [r for r in self.by_user.get(user, []) if not r["forgotten"]]

    def texts(self, user: str) -> list[str]:
        return [r["memory"] for r in self.live(user)]

    def remember(self, user: str, text: str, metadata: dict | None = None) -> dict[str, Any]:
        """Add a memory; one already live with the same text moves to the end instead."""
        records = self.by_user.setdefault(user, [])
        now = time.time()
        for record in records:
            if record["memory"] == text and not record["forgotten"]:
                records.remove(record)
                record["updated"] = now
                records.append(record)
                return record
        n = next(self.seq)
        record = {"id": f"mem_{n:06d}", "memory": text, "metadata": dict(metadata or {}), "created": now,
                  "updated": now, "n": n, "forgotten": False}
        records.append(record)
        return record

    def get(self, user: str, memory_id: str) -> dict[str, Any] | None:
        return next((r for r in self.by_user.get(user, []) if r["id"] == memory_id), None)

    def forget(self, user: str, memory_id: str) -> dict[str, Any] | None:
        record = self.get(user, memory_id)
        if record is None or record["forgotten"]:
            return None
        record["forgotten"], record["updated"] = True, time.time()
        return record

    def converse(self, texts: list[str], user: str | None) -> str:
        """Reply to the last user text; with a user id, use and then extend its memories."""
        last = texts[-1] if texts else ""
        if not ASKS_NAME.search(last):
            reply = f"echo: {last}"
        else:
            known = self.texts(user) + texts[:-1] if user is not None else []
            names = [m.group(1) for text in known for m in TELLS_NAME.finditer(text)]
            reply = f"Your name is {names[-1]}." if names else "I don't know your name."
        if user is not None:
            for text in filter(None, texts):  # re-sent history moves to the end, keeping order
                self.remember(user, text, {"source": "router"})
        return reply
