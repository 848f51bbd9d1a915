"""Where usage records live: SQLite in the state folder (default) or PostgreSQL.

Both take the same schema and the same SQL (``?`` placeholders are turned into ``%s``
for psycopg); the schema carries a version in ``usage_meta`` and :data:`MIGRATIONS` brings
an older store up to date when a writer opens it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .usage import COLUMNS, EARLIEST, KEEP_FIRST

TABLE = "usage_requests"
SCHEMA_VERSION = 1
INDEXES = {"usage_ts": "ts_ms", "usage_client_ts": "client_id, ts_ms", "usage_model_ts": "model_group, ts_ms"}
# version -> statements that bring version-1 up to it (none yet: version 1 is the first)
MIGRATIONS: dict[int, list[str]] = {}

# Two rollups of the same sums: per quarter hour (any UTC offset is a whole number of them;
# hourly reports) and per local day (this machine's time zone, DST included; every other
# report). Latency buckets are counted per local day and without the session: finer, they
# would outnumber the records.
SLOT_MS = 900_000
DAY_MS = 86_400_000
ROLLUP = "usage_rollup"  # by slot
DAILY = "usage_rollup_daily"  # by day
HISTOGRAM = "usage_rollup_latency"  # by day
GROUP_KEYS = ("client_id", "project", "model_group", "provider", "session_id")
ROLLUP_KEYS = ("slot",) + GROUP_KEYS
DAILY_KEYS = ("day",) + GROUP_KEYS
HISTOGRAM_KEYS = ("day", "client_id", "project", "model_group", "provider")
ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cost_usd", "unpriced", "memory_errors", "context_modified", "cloudflare_retries")
_ROW_NEEDS = ("request_id", "ts_ms", "client_id", "project", "model_group", "provider", "session_id", "status",
              "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "priced",
              "sm_error", "sm_context_modified", "cf_retries", "latency_bucket", "first_event_bucket")


def local_day(ts_ms: int) -> int:
    """Days since 1970-01-01 of the local date at ``ts_ms``."""
    return (ts_ms + time.localtime(ts_ms / 1000).tm_gmtoff * 1000) // DAY_MS


def _keys_sql(keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {'BIGINT' if k in ('slot', 'day') else 'TEXT'} NOT NULL" for k in keys)


def create_statements() -> list[str]:
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    sums = ", ".join(f"{k} {'DOUBLE PRECISION' if k == 'cost_usd' else 'BIGINT'} NOT NULL DEFAULT 0"
                     for k in ROLLUP_SUMS)
    statements = [f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})",
                  "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value TEXT)"]
    for table, keys in ((ROLLUP, ROLLUP_KEYS), (DAILY, DAILY_KEYS)):
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({_keys_sql(keys)}, {sums}, "
                          f"PRIMARY KEY ({', '.join(keys)}))")
    statements.append(f"CREATE TABLE IF NOT EXISTS {HISTOGRAM} ({_keys_sql(HISTOGRAM_KEYS)}, kind TEXT NOT NULL, "
                      f"bucket INTEGER NOT NULL, n BIGINT NOT NULL DEFAULT 0, "
                      f"PRIMARY KEY ({', '.join(HISTOGRAM_KEYS)}, kind, bucket))")
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({cols})" for name, cols in INDEXES.items()]
    return statements


def contribution(row: dict) -> tuple[tuple, tuple, tuple, list[tuple]] | None:
    """What one record adds to the rollups: its slot key, its day key, its sums and its
    latency buckets' keys."""
    if row.get("ts_ms") is None:
        return None
    group = tuple(row.get(k) or "" for k in GROUP_KEYS)
    day = local_day(row["ts_ms"])

    def n(name: str) -> int:
        return int(row.get(name) or 0)

    priced = row.get("priced")
    sums = (1, 1 if (row.get("status") or 0) >= 400 else 0, n("input_tokens"), n("output_tokens"),
            n("cache_read_tokens"), n("cache_write_tokens"), float(row.get("cost_usd") or 0) if priced == 1 else 0.0,
            1 if priced == 0 else 0, 1 if row.get("sm_error") is not None else 0, n("sm_context_modified"),
            n("cf_retries"))
    buckets = [(day,) + group[:4] + (kind, row[column]) for kind, column in (("latency", "latency_bucket"),
                                                                             ("first_event", "first_event_bucket"))
               if row.get(column) is not None]
    return (row["ts_ms"] // SLOT_MS,) + group, (day,) + group, sums, buckets


def rollup_deltas(before: dict[str, dict], after: dict[str, dict]) -> tuple[dict, dict, dict]:
    """What to add to each rollup so that it follows the records: (slot key -> sums,
    day key -> sums, histogram key -> count)."""
    slots: dict[tuple, list] = {}
    days: dict[tuple, list] = {}
    counts: dict[tuple, int] = {}
    for request_id, new in after.items():
        for row, sign in ((before.get(request_id), -1), (new, 1)):
            part = contribution(row) if row is not None else None
            if part is None:
                continue
            slot_key, day_key, values, buckets = part
            for table, key in ((slots, slot_key), (days, day_key)):
                total = table.setdefault(key, [0] * len(ROLLUP_SUMS))
                for i, value in enumerate(values):
                    total[i] += sign * value
            for bucket_key in buckets:
                counts[bucket_key] = counts.get(bucket_key, 0) + sign
    return ({k: v for k, v in slots.items() if any(v)}, {k: v for k, v in days.items() if any(v)},
            {k: v for k, v in counts.items() if v})


def rollup_sql(table: str, keys: tuple[str, ...]) -> str:
    names = ", ".join(keys)
    adds = ", ".join(f"{k} = {table}.{k} + excluded.{k}" for k in ROLLUP_SUMS)
    return (f"INSERT INTO {table} ({names}, {', '.join(ROLLUP_SUMS)}) VALUES "
            f"({', '.join('?' * (len(keys) + len(ROLLUP_SUMS)))}) ON CONFLICT ({names}) DO UPDATE SET {adds}")


def histogram_sql() -> str:
    names = ", ".join(HISTOGRAM_KEYS)
    return (f"INSERT INTO {HISTOGRAM} ({names}, kind, bucket, n) VALUES "
            f"({', '.join('?' * (len(HISTOGRAM_KEYS) + 3))}) ON CONFLICT ({names}, kind, bucket) "
            f"DO UPDATE SET n = {HISTOGRAM}.n + excluded.n")


def fetch_rows(query, request_ids: list[str]) -> dict[str, dict]:
    """The records (the columns the rollup needs) of these request ids."""
    found: dict[str, dict] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start:start + 500]
        for values in query(f"SELECT {', '.join(_ROW_NEEDS)} FROM {TABLE} WHERE request_id IN "
                            f"({', '.join('?' * len(chunk))})", tuple(chunk)):
            found[values[0]] = dict(zip(_ROW_NEEDS, values))
    return found


def upsert_sql(names: tuple[str, ...]) -> str:
    """One row's insert, merged into an existing row of the same request id: a source only
    sets its own columns (the first model asked for and the earliest time are kept)."""
    updates = []
    for name in names:
        if name == "request_id":
            continue
        if name in KEEP_FIRST:
            updates.append(f"{name} = COALESCE({TABLE}.{name}, excluded.{name})")
        elif name in EARLIEST:
            updates.append(f"{name} = CASE WHEN {TABLE}.{name} IS NULL OR excluded.{name} < {TABLE}.{name} "
                           f"THEN excluded.{name} ELSE {TABLE}.{name} END")
        else:
            updates.append(f"{name} = excluded.{name}")
    conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    return (f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT (request_id) {conflict}")


def group_rows(rows: list[dict]) -> dict[tuple[str, ...], list[tuple]]:
    """Rows by their set of columns; rows of one request id in one batch merged first."""
    merged: dict[str, dict] = {}
    for row in rows:
        known = merged.get(row["request_id"])
        if known is None:
            merged[row["request_id"]] = dict(row)
        else:
            for name, value in row.items():
                if name in KEEP_FIRST and known.get(name) is not None:
                    continue
                if name in EARLIEST and known.get(name) is not None and known[name] <= value:
                    continue
                known[name] = value
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for row in merged.values():
        names = tuple(sorted(n for n in row if n in COLUMNS))
        groups.setdefault(names, []).append(tuple(row[n] for n in names))
    return groups


class SqlStore:
    """What both stores do with the same SQL: migrate, merge a batch with its rollups, prune,
    query. A subclass gives the connection (``self.db``), ``execute``/``executemany`` (its
    placeholders) and ``used_bytes``."""

    begin = "BEGIN"

    def execute(self, sql: str, params: tuple = ()):
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.db.executemany(sql, rows)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def _transaction(self, work) -> Any:
        self.execute(self.begin)
        try:
            result = work()
            self.execute("COMMIT")
            return result
        except BaseException:
            self.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        def work() -> None:
            for statement in create_statements():
                self.execute(statement)
            row = self.query("SELECT value FROM usage_meta WHERE key = 'schema_version'")
            version = int(row[0][0]) if row else SCHEMA_VERSION
            for target in sorted(v for v in MIGRATIONS if v > version):
                for statement in MIGRATIONS[target]:
                    self.execute(statement)
                version = target
            self.execute("INSERT INTO usage_meta (key, value) VALUES ('schema_version', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(version),))
        self._transaction(work)

    def upsert(self, rows: list[dict]) -> None:
        """Merge a batch of record parts and follow them in the rollups, in one transaction."""
        def work() -> None:
            ids = list(dict.fromkeys(r["request_id"] for r in rows))
            before = fetch_rows(self.query, ids)
            for names, values in group_rows(rows).items():
                self.executemany(upsert_sql(names), values)
            slots, days, counts = rollup_deltas(before, fetch_rows(self.query, ids))
            for table, keys, sums in ((ROLLUP, ROLLUP_KEYS, slots), (DAILY, DAILY_KEYS, days)):
                self.executemany(rollup_sql(table, keys), [key + tuple(values) for key, values in sums.items()])
            self.executemany(histogram_sql(), [key + (n,) for key, n in counts.items()])
        self._transaction(work)

    def prune(self, retention_days: int, max_bytes: int | None) -> int:
        """Delete the local days past the retention, then the oldest day while the store's data
        is over its cap (whole days: the rollups stay equal to the records)."""
        deleted = self._delete_before(local_day(int(time.time() * 1000)) - retention_days + 1)
        while max_bytes and self.used_bytes() > max_bytes:
            oldest = self.query(f"SELECT MIN(ts_ms) FROM {TABLE}")[0][0]
            if oldest is None:
                break
            deleted += self._delete_before(local_day(oldest) + 1)
        return deleted

    def _delete_before(self, day: int) -> int:
        """Records of the local days before ``day`` and their rollups, in one transaction."""
        start_ms = day * DAY_MS - time.localtime(day * 86400).tm_gmtoff * 1000

        def work() -> int:
            deleted = self.execute(f"DELETE FROM {TABLE} WHERE ts_ms < ?", (start_ms,)).rowcount
            self.execute(f"DELETE FROM {ROLLUP} WHERE slot < ?", (start_ms // SLOT_MS,))
            for table in (DAILY, HISTOGRAM):
                self.execute(f"DELETE FROM {table} WHERE day < ?", (day,))
            return deleted
        return self._transaction(work)

    def used_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.db.close()


class SqliteStore(SqlStore):
    """One connection. The writer opens it read-write (WAL, schema, migrations); readers
    (``stats``, the dashboard) open it read-only and never block the writer."""

    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        import sqlite3  # here, not at import: `start_proxies.py` answers fast

        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash loses no committed batch's integrity
            self._migrate()
            try:
                path.chmod(0o600)
            except OSError:
                pass

    def prune(self, retention_days: int, max_bytes: int | None) -> int:
        deleted = super().prune(retention_days, max_bytes)
        if deleted:
            self.execute("PRAGMA incremental_vacuum")
        return deleted

    def used_bytes(self) -> int:
        pages, free, size = (self.query(f"PRAGMA {p}")[0][0] for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size


def database_file(state_root: Path) -> Path:
    return state_root / "usage.sqlite3"


def open_store(database_url: str | None, state_root: Path | None, *, readonly: bool = False) -> Any:
    """The store a config names: PostgreSQL for a ``database_url``, else SQLite in the state folder."""
    if database_url:
        from .usage_pg import PostgresStore

        return PostgresStore(database_url, readonly=readonly)
    assert state_root is not None
    return SqliteStore(database_file(state_root), readonly=readonly)
