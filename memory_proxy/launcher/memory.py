"""``start_proxies.py memory ...``: see, search, forget, export and import one id's memory.

The id is the one the front door gives a client (``--id``, else what ``route`` resolves for
``--user-agent``/``--header``); every call names it as the Memory API's namespace, so a
command never reaches another id's memory. Exit codes as the other commands: 0 done, 1 the
call failed (message, never a traceback), 2 bad input (config, id, file, options).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_proxy.launcher.config_commands import client_headers
from memory_proxy.launcher.context import Context
from memory_proxy.launcher.term import err, fail, out, print_json, warn

EXPORT_FORMAT = "litellm-memory-proxy/memory-export"
SUMMARY = 72  # characters of a memory shown in lists


@dataclass(frozen=True)
class Who:
    """Whose memory: an explicit ``--id``, or the headers a client would send."""

    id: str | None = None
    user_agent: str | None = None
    headers: tuple[str, ...] = ()


class _Stop(Exception):
    def __init__(self, code: int, message: str, kind: str = "usage", **more: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.kind, self.more = code, message, kind, more  # more: for --json


def _resolve(ctx: Context, who: Who):
    """(config, id, why) or _Stop(2)."""
    from memory_proxy.config.model import ConfigError, load_config
    from memory_proxy.server.routing import InvalidClientId, resolve, validate_id

    if who.id is not None and (who.user_agent is not None or who.headers):
        raise _Stop(2, "--id names the id; --user-agent and --header resolve one: give one or the other")
    try:
        config = load_config(ctx.config)
    except ConfigError as exc:
        raise _Stop(2, exc.render(), "config") from None
    try:
        if who.id is not None:
            return config, validate_id(who.id, "--id"), "--id"
        resolution = resolve(config.user_id_mappings, client_headers(who.user_agent, list(who.headers)),
                             "/v1/chat/completions")
    except (InvalidClientId, ValueError) as exc:
        raise _Stop(2, str(exc)) from None
    return config, resolution.user_id, resolution.detail


def _run(ctx: Context, who: Who, as_json: bool, action) -> int:
    """Resolve the id, open a session, run ``action(api, user_id, why)``; failures become one line."""
    from memory_proxy.supermemory.memory_api import MemoryApiError, session

    try:
        config, user_id, why = _resolve(ctx, who)
        with session(config, ctx.state) as api:
            return action(api, user_id, why)
    except _Stop as stop:
        code, message, kind, more = stop.code, stop.message, stop.kind, stop.more
    except MemoryApiError as exc:
        code, message, kind, more = (2 if exc.kind == "no_key" else 1), str(exc), exc.kind, {}
    if as_json:
        print_json({"ok": False, "error": message, "kind": kind, **more})
    else:
        fail(message)
    return code


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def _summary(text: str | None, width: int = SUMMARY) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _heading(user_id: str, why: str, what: str) -> None:
    out.line("memory id: ", (user_id, "bold"), f"  ({why})  {what}")


# --- list / search / show / profile -------------------------------------------------------


def list_memories(ctx: Context, who: Who, limit: int, as_json: bool) -> int:
    from memory_proxy.supermemory.memory_api import all_memories, memory_record

    if limit < 1:
        return _usage("--limit must be at least 1", as_json)

    def action(api, user_id, why):
        found = all_memories(api, user_id, limit)
        if as_json:
            print_json({"ok": True, "user_id": user_id, "memories": [memory_record(m) for m in found]})
            return 0
        _heading(user_id, why, f"{len(found)} memor{'y' if len(found) == 1 else 'ies'}, newest first")
        if found:
            out.table(("id", "created", "memory"),
                      [[m.id, _when(m.system.created_at), _summary(m.memory)] for m in found])
        return 0
    return _run(ctx, who, as_json, action)


def search(ctx: Context, who: Who, query: str, limit: int, as_json: bool) -> int:
    if not query.strip():
        return _usage("the search query is empty", as_json)
    if limit < 1:
        return _usage("--limit must be at least 1", as_json)

    def action(api, user_id, why):
        answer = api.call(api.client.search, user_id, query=query, limit=limit, search_mode="memories")
        results = [{"id": r.id, "memory": r.memory if r.memory is not None else r.chunk,
                    "similarity": r.similarity, "updated_at": r.system.updated_at} for r in answer.results]
        if as_json:
            print_json({"ok": True, "user_id": user_id, "query": query, "results": results})
            return 0
        _heading(user_id, why, f"{len(results)} result(s) for {query!r}")
        if results:
            out.table(("score", "id", "updated", "memory"),
                      [[f"{r['similarity']:.2f}", r["id"], _when(r["updated_at"]), _summary(r["memory"], 64)]
                       for r in results])
        return 0
    return _run(ctx, who, as_json, action)


def show(ctx: Context, who: Who, memory_id: str, as_json: bool) -> int:
    from memory_proxy.supermemory.memory_api import MemoryApiError, memory_record, valid_memory_id

    if not valid_memory_id(memory_id):
        return _usage(f"{memory_id[:80]!r} is not a memory id (letters, digits, _ and -)", as_json)

    def action(api, user_id, why):
        try:
            memory = api.call(api.client.memories.get, user_id, memory_id)
        except MemoryApiError as exc:
            if exc.kind == "not_found":
                raise MemoryApiError("not_found", f"no memory {memory_id!r} in {user_id!r}'s memory") from None
            raise
        record = memory_record(memory)
        if as_json:
            print_json({"ok": True, "user_id": user_id, "memory": record})
            return 0
        _heading(user_id, why, "")
        for label, key in (("id", "id"), ("created", "created_at"), ("updated", "updated_at")):
            out.line(f"{label + ':':9}", _when(record[key]) if key != "id" else record[key])
        flags = [name for name, on in (("static (profile)", record["is_static"]),
                                       ("forgotten", record["is_forgotten"])) if on]
        if flags:
            out.line(f"{'flags:':9}", ", ".join(flags))
        if record["metadata"]:
            out.line(f"{'metadata:':9}", json.dumps(record["metadata"], sort_keys=True))
        out.line()
        out.line(record["memory"])
        return 0
    return _run(ctx, who, as_json, action)


def profile(ctx: Context, who: Who, as_json: bool) -> int:
    def action(api, user_id, why):
        answer = api.call(api.client.profile, user_id).profile
        data = {"static": [{"id": f.id, "memory": f.memory} for f in answer.static],
                "dynamic": [{"id": f.id, "memory": f.memory} for f in answer.dynamic],
                "buckets": {name: [{"id": f.id, "memory": f.memory} for f in facts]
                            for name, facts in (answer.buckets or {}).items()}}
        if as_json:
            print_json({"ok": True, "user_id": user_id, "profile": data})
            return 0
        _heading(user_id, why, "Supermemory's profile")
        sections = [("Stable facts", data["static"]), ("Recent context", data["dynamic"])]
        sections += [(f"Bucket {name}", facts) for name, facts in data["buckets"].items()]
        for title, facts in sections:
            out.line((title + ":", "bold"), "" if facts else " (none)")
            for fact in facts:
                out.line(f"  - {_summary(fact['memory'], 100)}  ", (fact["id"], "dim"))
        return 0
    return _run(ctx, who, as_json, action)


# --- forget -------------------------------------------------------------------------------


def forget(ctx: Context, who: Who, ids: list[str], everything: bool, yes: bool, as_json: bool) -> int:
    from memory_proxy.supermemory.memory_api import PAGE, MemoryApiError, all_memories, valid_memory_id

    if everything == bool(ids):
        return _usage("name the memory ids to forget, or --all (not both)", as_json)
    if bad := [i for i in ids if not valid_memory_id(i)]:
        return _usage(f"not a memory id (letters, digits, _ and -): {', '.join(repr(i[:80]) for i in bad)}", as_json)

    def action(api, user_id, why):
        chosen = list(dict.fromkeys(ids))
        foreign = []
        for memory_id in chosen:  # every named id first: one not in this memory, and nothing is forgotten
            try:
                api.call(api.client.memories.get, user_id, memory_id)
            except MemoryApiError as exc:
                if exc.kind != "not_found":
                    raise
                foreign.append(memory_id)
        if foreign:
            raise _Stop(1, f"not in {user_id!r}'s memory: {', '.join(foreign)}; nothing forgotten", "not_found",
                        not_found=foreign)
        if everything:
            chosen = [m.id for m in all_memories(api, user_id)]
            if not chosen:
                return _done(as_json, user_id, [], [], f"nothing to forget: {user_id!r} has no memories")
            if not yes and not _confirm(f"Forget all {len(chosen)} memories of {user_id!r}? [y/N] "):
                raise _Stop(1, "nothing forgotten (not confirmed; --yes skips the question)", "not_confirmed")
        forgotten, errors = [], []
        for start in range(0, len(chosen), PAGE):
            answer = api.call(api.client.memories.forget, user_id, ids=chosen[start:start + PAGE])
            forgotten += [m.id for m in answer.matches]
            errors += [{"id": e.id, "error": e.error} for e in answer.errors]
        return _done(as_json, user_id, forgotten, errors,
                     f"forgot {len(forgotten)} memor{'y' if len(forgotten) == 1 else 'ies'} of {user_id!r}")
    return _run(ctx, who, as_json, action)


def _done(as_json: bool, user_id: str, forgotten: list[str], errors: list[dict], message: str) -> int:
    if as_json:
        print_json({"ok": not errors, "user_id": user_id, "forgotten": forgotten, "errors": errors})
    else:
        out.line(("✔ ", "bold green"), message)
        for e in errors:
            warn(f"{e['id']}: {e['error']}")
    return 1 if errors else 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise _Stop(2, "refusing to forget everything without a terminal to ask; add --yes")
    err.write(question)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _usage(message: str, as_json: bool) -> int:
    print_json({"ok": False, "error": message, "kind": "usage"}) if as_json else fail(message)
    return 2


# --- export / import ----------------------------------------------------------------------


def export(ctx: Context, who: Who) -> int:
    """The id's live memories as JSON on stdout, oldest first (the order ``import`` replays)."""
    from memory_proxy.supermemory.memory_api import all_memories, memory_record

    def action(api, user_id, why):
        found = [memory_record(m) for m in reversed(all_memories(api, user_id))]
        print_json({"format": EXPORT_FORMAT, "version": 1, "user_id": user_id,
                     "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     "memories": found})
        err.line(f"exported {len(found)} memories of {user_id!r}")
        return 0
    return _run(ctx, who, False, action)


def _read_export(path: Path) -> tuple[str | None, list[dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Stop(2, f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _Stop(2, f"{path} is not JSON ({exc})") from None
    except RecursionError:
        raise _Stop(2, f"{path} is not a `memory export` file (nested too deeply)") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT or not isinstance(data.get("memories"), list):
        raise _Stop(2, f"{path} is not a `memory export` file (format {EXPORT_FORMAT!r} with a memories list)")
    memories = data["memories"]
    for index, item in enumerate(memories):  # every item checked before the first is added
        if not isinstance(item, dict) or not isinstance(item.get("memory"), str) or not item["memory"].strip():
            raise _Stop(2, f"{path}: memories[{index}] has no memory text")
        if item.get("metadata") is not None and not isinstance(item["metadata"], dict):
            raise _Stop(2, f"{path}: memories[{index}].metadata is not a mapping")
    source = data.get("user_id") if isinstance(data.get("user_id"), str) else None
    return source, memories


def _metadata(item: dict, source: str | None) -> dict[str, Any]:
    """What the Memory API takes as metadata (strings, numbers, booleans, lists of strings), plus provenance."""
    kept = {k: v for k, v in (item.get("metadata") or {}).items() if isinstance(k, str) and (
        isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))
        or (isinstance(v, list) and all(isinstance(x, str) for x in v)))}
    if source:
        kept["imported_from"] = source
    return kept


def import_(ctx: Context, who: Who, path: Path, as_json: bool) -> int:
    from memory_proxy.supermemory.memory_api import MemoryApiError

    def action(api, user_id, why):
        source, memories = _read_export(path)
        added = 0
        try:
            for item in memories:
                api.call(api.client.add, user_id, content=item["memory"], metadata=_metadata(item, source))
                added += 1
        except MemoryApiError as exc:
            if added:
                warn(f"imported {added} of {len(memories)} memories into {user_id!r} before the failure")
            raise _Stop(2 if exc.kind == "no_key" else 1, str(exc), exc.kind, imported=added) from None
        if as_json:
            print_json({"ok": True, "user_id": user_id, "imported": added, "from": source})
        else:
            out.line(("✔ ", "bold green"), f"imported {added} memories into {user_id!r}"
                     + (f" (exported from {source!r})" if source else ""))
        return 0
    return _run(ctx, who, as_json, action)
