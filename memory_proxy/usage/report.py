"""Reports over the usage record, for ``start_proxies.py stats`` and the dashboard's API.

Reports read the rollup the writer keeps beside the records (sums per quarter hour, latency
buckets 10 % wide per local day; ``store.py``), so a report over a million records reads
thousands of rows, not a million. Days are local days (the machine's UTC offset now); weeks start on Monday.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from memory_proxy.usage.record import bucket_value, local_day
from memory_proxy.usage.store import DAILY, HISTOGRAM, ROLLUP, ROLLUP_SUMS, SLOT_MS, TABLE

PERIODS = ("hourly", "daily", "weekly", "monthly", "session", "total")
GROUPS = {"client": "client_id", "project": "project", "model": "model_group", "provider": "provider"}
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass
class Row:
    """One line of a report: a period, a key (client, project, model or provider), maybe a model."""

    period: str
    key: str
    model: str | None = None
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0  # priced requests only
    unpriced: int = 0  # requests of a model without a price: their cost is unknown, not zero
    memory_errors: int = 0
    context_modified: int = 0
    cloudflare_retries: int = 0
    latency: dict[int, int] = field(default_factory=dict, repr=False)  # bucket -> count
    first_event: dict[int, int] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        out = {"period": self.period, "key": self.key}
        if self.model is not None:
            out["model"] = self.model
        out.update(requests=self.requests, errors=self.errors, p50_latency_ms=percentile(self.latency, 0.5),
                   p95_latency_ms=percentile(self.latency, 0.95),
                   p50_first_event_ms=percentile(self.first_event, 0.5),
                   input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                   cache_read_tokens=self.cache_read_tokens, cache_write_tokens=self.cache_write_tokens,
                   cost_usd=round(self.cost_usd, 6), unpriced_requests=self.unpriced,
                   memory_errors=self.memory_errors, context_modified=self.context_modified,
                   cloudflare_retries=self.cloudflare_retries)
        return out

    def add(self, other: Row) -> None:
        for name in ("requests", "errors", *SUMS, "cost_usd", "unpriced", "memory_errors", "context_modified",
                     "cloudflare_retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.latency, other.latency), (self.first_event, other.first_event)):
            for b, n in theirs.items():
                mine[b] = mine.get(b, 0) + n


def percentile(histogram: dict[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= q * total:
            return round(bucket_value(b), 1)
    return None  # not reached


def utc_offset_ms() -> int:
    return int(dt.datetime.now().astimezone().utcoffset().total_seconds() * 1000)


def day_label(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


def period_label(period: str, value) -> str:
    if period == "total":
        return "total"
    if period == "session":
        return str(value)
    if period == "hourly":
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(hours=int(value))
        return moment.strftime("%Y-%m-%dT%H:00")
    day = day_label(int(value))
    if period == "weekly":
        return (day - dt.timedelta(days=day.weekday())).isoformat()
    if period == "monthly":
        return day.strftime("%Y-%m")
    return day.isoformat()


def report(store, *, period: str = "daily", by: str = "client", since_ms: int | None = None,
           until_ms: int | None = None, key: str | None = None, breakdown: bool = False,
           offset_ms: int | None = None) -> list[Row]:
    """Rows of one report from the rollup, newest period first, then by requests."""
    if period not in PERIODS or by not in GROUPS:
        raise ValueError(f"no {period!r} report by {by!r}: periods {', '.join(PERIODS)}; by {', '.join(GROUPS)}")
    offset = utc_offset_ms() if offset_ms is None else offset_ms  # hourly reports only
    column = GROUPS[by]
    since, until = since_ms or 0, until_ms or 2**62
    if period == "hourly":  # the quarter-hour rollup
        table, period_sql = ROLLUP, f"((slot * {SLOT_MS} + {int(offset)}) / {HOUR_MS})"
        where, params = ["slot >= ?", "slot < ?"], [since // SLOT_MS, -(-until // SLOT_MS)]
    else:  # the daily rollup; days are folded into weeks and months below
        table = DAILY
        period_sql = {"session": "session_id", "total": "(day * 0)"}.get(period, "day")  # PostgreSQL: no constant
        where, params = ["day >= ?", "day < ?"], [local_day(since), local_day(until - 1) + 1 if until_ms else 2**40]
    keys = [period_sql, column] + (["model_group"] if breakdown else [])
    if key is not None:  # per session, ``key`` may name the session itself (ccusage's `session --id`)
        where.append(f"({column} = ? OR session_id = ?)" if period == "session" else f"{column} = ?")
        params += [key, key] if period == "session" else [key]
    group = ", ".join(keys)
    main = store.query(f"SELECT {group}, {', '.join(f'SUM({c})' for c in ROLLUP_SUMS)} FROM {table} "
                       f"WHERE {' AND '.join(where)} GROUP BY {group}", tuple(params))
    if period != "hourly":  # latency buckets are counted per local day
        buckets = store.query(f"SELECT {group}, kind, bucket, SUM(n) FROM {HISTOGRAM} WHERE {' AND '.join(where)} "
                              f"GROUP BY {group}, kind, bucket", tuple(params))
    else:  # the dashboard's time series: shows no percentiles (none are kept per quarter hour)
        buckets = []
    width = len(keys)
    rows: dict[tuple, Row] = {}

    def row_for(values: tuple) -> Row:
        label = period_label(period, values[0] if values[0] != "" else "-")
        ident = (label, values[1], values[2] if breakdown else None)
        found = rows.get(ident)
        if found is None:
            found = rows[ident] = Row(*ident)
        return found

    for values in main:
        sums = values[width:]
        part = Row("", "", None, *(int(v or 0) for v in sums[:6]), float(sums[6] or 0),
                   *(int(v or 0) for v in sums[7:]))
        row_for(values).add(part)
    for values in buckets:
        row = row_for(values)
        kind, b, n = values[width:]
        histogram = row.latency if kind == "latency" else row.first_event
        histogram[int(b)] = histogram.get(int(b), 0) + int(n)
    found = [r for r in rows.values() if r.requests]
    found.sort(key=lambda r: r.model or "")
    found.sort(key=lambda r: r.requests, reverse=True)
    found.sort(key=lambda r: r.period, reverse=period != "session")
    return found


def totals(rows: list[Row]) -> Row:
    total = Row("total", "total")
    for row in rows:
        total.add(row)
    return total


def latest(store, limit: int = 50, since_ms: int | None = None) -> list[dict]:
    """The newest records, for the dashboard's live table (figures only: there is no text to show)."""
    names = ("request_id", "ts_ms", "client_id", "client_source", "method", "path", "api_shape", "model_group",
             "deployment", "provider", "supermemory", "status", "error_code", "completed", "streamed",
             "latency_ms", "ttfb_ms", "first_event_ms", "input_tokens", "output_tokens", "cache_read_tokens",
             "cache_write_tokens", "cost_usd", "priced", "sm_error", "sm_context_modified", "sm_chunks_retrieved",
             "cf_retries", "session_id")
    found = store.query(f"SELECT {', '.join(names)} FROM {TABLE} WHERE ts_ms >= ? ORDER BY ts_ms DESC LIMIT ?",
                        (since_ms or 0, int(limit)))
    return [dict(zip(names, values, strict=True)) for values in found]


def parse_day(text: str, *, end: bool = False) -> int:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` (local day) -> ms since the epoch (its start, or with
    ``end`` the start of the next day)."""
    cleaned = text.replace("-", "")
    try:
        day = dt.datetime.strptime(cleaned, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or YYYYMMDD)") from None
    if end:
        day += dt.timedelta(days=1)
    return int(time.mktime(day.timetuple()) * 1000)


def today_start_ms() -> int:
    return parse_day(dt.date.today().isoformat())


# --- memory signals: the dashboard's memory page and `doctor` ------------------------------


def client_ids(store) -> list[dict]:
    """Every client id the record has seen, most recent first, with the start of the quarter
    hour of its latest request (from the quarter-hour rollup: cheap over any number of records)."""
    found = store.query(f"SELECT client_id, SUM(requests), MAX(slot) FROM {ROLLUP} WHERE client_id <> '' "
                        f"GROUP BY client_id")
    rows = [{"id": cid, "requests": int(n or 0), "last_ms": int(slot) * SLOT_MS} for cid, n, slot in found]
    rows.sort(key=lambda r: (-r["last_ms"], r["id"]))
    return rows


_SIGNALS = ("COUNT(*)", "SUM(CASE WHEN supermemory = 1 THEN 1 ELSE 0 END)", "SUM(COALESCE(sm_context_modified, 0))",
            "SUM(COALESCE(sm_chunks_retrieved, 0))", "SUM(CASE WHEN sm_error IS NULL THEN 0 ELSE 1 END)",
            "SUM(COALESCE(cf_retries, 0))")
_SIGNAL_NAMES = ("requests", "supermemory_requests", "context_modified", "chunks_retrieved", "memory_errors",
                 "cloudflare_retries")
_SIGNAL_ROW = ("request_id", "ts_ms", "model_group", "status", "sm_context_modified", "sm_chunks_retrieved",
               "sm_error", "cf_retries")


def memory_signals(store, client_id: str, since_ms: int, until_ms: int | None = None, recent: int = 20) -> dict:
    """One client id's Supermemory signals over a range: sums, and its latest requests that
    carry a signal (the client/time index keeps this a range scan of one client's records)."""
    until = until_ms or 2**62
    where = "client_id = ? AND ts_ms >= ? AND ts_ms < ?"
    params = (client_id, since_ms, until)
    sums = store.query(f"SELECT {', '.join(_SIGNALS)} FROM {TABLE} WHERE {where}", params)[0]
    totals = {name: int(value or 0) for name, value in zip(_SIGNAL_NAMES, sums, strict=True)}
    rows = store.query(f"SELECT {', '.join(_SIGNAL_ROW)} FROM {TABLE} WHERE {where} AND (supermemory = 1 OR "
                       f"sm_error IS NOT NULL OR sm_context_modified IS NOT NULL OR cf_retries > 0) "
                       f"ORDER BY ts_ms DESC LIMIT ?", (*params, int(recent)))
    latest = [dict(zip(_SIGNAL_ROW, values, strict=True)) for values in rows]
    last_error = store.query(f"SELECT ts_ms, sm_error FROM {TABLE} WHERE {where} AND sm_error IS NOT NULL "
                             f"ORDER BY ts_ms DESC LIMIT 1", params)
    return {"client_id": client_id, "since_ms": since_ms, "until_ms": until_ms, **totals,
            "last_error": {"ts_ms": last_error[0][0], "message": last_error[0][1]} if last_error else None,
            "recent": latest}


def memory_incidents(store, since_ms: int, cloudflare_marker: str) -> dict[str, dict]:
    """Cloudflare refusals (records the egress retried, or refused twice: a retry by LiteLLM
    under the same request id may have written ``cf_retries`` 0 over it) and
    ``x-supermemory-error`` answers (not counting the egress's own ``cloudflare_marker``) since a time:
    ``{"cloudflare"|"memory_errors": {"count", "last_ms", "clients": {id: n}, and "twice" (Cloudflare)
    or "last_message" (Supermemory's latest error)}}``."""
    found: dict[str, dict] = {}
    for name, condition, params in (
            ("cloudflare", "(cf_retries > 0 OR sm_error = ?)", (cloudflare_marker,)),
            ("memory_errors", "sm_error IS NOT NULL AND sm_error <> ?", (cloudflare_marker,))):
        rows = store.query(f"SELECT COALESCE(client_id, ''), COUNT(*), MAX(ts_ms), "
                           f"SUM(CASE WHEN sm_error = ? THEN 1 ELSE 0 END) FROM {TABLE} "
                           f"WHERE ts_ms >= ? AND {condition} GROUP BY COALESCE(client_id, '')",
                           (cloudflare_marker, since_ms, *params))
        clients = {cid: int(n) for cid, n, _, _ in rows}
        entry = {"count": sum(clients.values()), "last_ms": max((int(t) for _, _, t, _ in rows if t), default=None),
                 "clients": dict(sorted(clients.items(), key=lambda item: (-item[1], item[0])))}
        if name == "cloudflare":
            entry["twice"] = sum(int(twice or 0) for *_, twice in rows)
        elif entry["count"]:
            last = store.query(f"SELECT sm_error FROM {TABLE} WHERE ts_ms >= ? AND {condition} "
                               f"ORDER BY ts_ms DESC LIMIT 1", (since_ms, *params))
            entry["last_message"] = last[0][0] if last else None
        found[name] = entry
    return found
