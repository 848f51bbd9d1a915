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

# Reports read sums per quarter hour (any UTC offset is a whole number of them), kept by the
# writer in the same transaction as the records, so a million records make a few thousand rows.
# Latency buckets are kept per hour without the session (they would outnumber the records):
# a day of a UTC offset that is no whole hour takes its first hour's percentiles whole.
SLOT_MS = 900_000
HOUR_MS = 3_600_000
ROLLUP = "usage_rollup"
HISTOGRAM = "usage_rollup_latency"
ROLLUP_KEYS = ("slot", "client_id", "project", "model_group", "provider", "session_id")
HISTOGRAM_KEYS = ("hour", "client_id", "project", "model_group", "provider")
ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cost_usd", "unpriced", "memory_errors", "context_modified", "cloudflare_retries")
_ROW_NEEDS = ("request_id", "ts_ms", "client_id", "project", "model_group", "provider", "session_id", "status",
              "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "priced",
              "sm_error", "sm_context_modified", "cf_retries", "latency_bucket", "first_event_bucket")


def create_statements() -> list[str]:
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    keys = ", ".join(f"{k} {'BIGINT' if k == 'slot' else 'TEXT'} NOT NULL" for k in ROLLUP_KEYS)
    hist_keys = ", ".join(f"{k} {'BIGINT' if k == 'hour' else 'TEXT'} NOT NULL" for k in HISTOGRAM_KEYS)
    sums = ", ".join(f"{k} {'DOUBLE PRECISION' if k == 'cost_usd' else 'BIGINT'} NOT NULL DEFAULT 0"
                     for k in ROLLUP_SUMS)
    statements = [f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})",
                  "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value TEXT)",
                  f"CREATE TABLE IF NOT EXISTS {ROLLUP} ({keys}, {sums}, PRIMARY KEY ({', '.join(ROLLUP_KEYS)}))",
                  f"CREATE TABLE IF NOT EXISTS {HISTOGRAM} ({hist_keys}, kind TEXT NOT NULL, bucket INTEGER NOT NULL, "
                  f"n BIGINT NOT NULL DEFAULT 0, PRIMARY KEY ({', '.join(HISTOGRAM_KEYS)}, kind, bucket))"]
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({cols})" for name, cols in INDEXES.items()]
    return statements


def contribution(row: dict) -> tuple[tuple, tuple, list[tuple]] | None:
    """What one record adds to the rollup: its key, its sums, its latency buckets' keys."""
    if row.get("ts_ms") is None:
        return None
    key = (row["ts_ms"] // SLOT_MS,) + tuple(row.get(k) or "" for k in ROLLUP_KEYS[1:])

    def n(name: str) -> int:
        return int(row.get(name) or 0)

    priced = row.get("priced")
    sums = (1, 1 if (row.get("status") or 0) >= 400 else 0, n("input_tokens"), n("output_tokens"),
            n("cache_read_tokens"), n("cache_write_tokens"), float(row.get("cost_usd") or 0) if priced == 1 else 0.0,
            1 if priced == 0 else 0, 1 if row.get("sm_error") is not None else 0, n("sm_context_modified"),
            n("cf_retries"))
    hist_key = (row["ts_ms"] // HOUR_MS,) + key[1:len(HISTOGRAM_KEYS)]
    buckets = [hist_key + (kind, row[column]) for kind, column in (("latency", "latency_bucket"),
                                                         ("first_event", "first_event_bucket"))
               if row.get(column) is not None]
    return key, sums, buckets


def rollup_deltas(before: dict[str, dict], after: dict[str, dict]) -> tuple[dict, dict]:
    """(key -> sums, (key, kind, bucket) -> count) to add so the rollup follows the records."""
    sums: dict[tuple, list] = {}
    counts: dict[tuple, int] = {}
    for request_id, new in after.items():
        for row, sign in ((before.get(request_id), -1), (new, 1)):
            part = contribution(row) if row is not None else None
            if part is None:
                continue
            key, values, buckets = part
            total = sums.setdefault(key, [0] * len(ROLLUP_SUMS))
            for i, value in enumerate(values):
                total[i] += sign * value
            for bucket_key in buckets:
                counts[bucket_key] = counts.get(bucket_key, 0) + sign
    return ({k: v for k, v in sums.items() if any(v)}, {k: v for k, v in counts.items() if v})


def rollup_sql() -> tuple[str, str]:
    keys = ", ".join(ROLLUP_KEYS)
    adds = ", ".join(f"{k} = {ROLLUP}.{k} + excluded.{k}" for k in ROLLUP_SUMS)
    sums = (f"INSERT INTO {ROLLUP} ({keys}, {', '.join(ROLLUP_SUMS)}) VALUES "
            f"({', '.join('?' * (len(ROLLUP_KEYS) + len(ROLLUP_SUMS)))}) ON CONFLICT ({keys}) DO UPDATE SET {adds}")
    hist_keys = ", ".join(HISTOGRAM_KEYS)
    counts = (f"INSERT INTO {HISTOGRAM} ({hist_keys}, kind, bucket, n) VALUES "
              f"({', '.join('?' * (len(HISTOGRAM_KEYS) + 3))}) ON CONFLICT ({hist_keys}, kind, bucket) "
              f"DO UPDATE SET n = {HISTOGRAM}.n + excluded.n")
    return sums, counts


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


class SqliteStore:
    """One connection. The writer opens it read-write (WAL, schema, migrations); readers
    (``stats``, the dashboard) open it read-only and never block the writer."""

    placeholder = "?"

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

    def _migrate(self) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in create_statements():
                db.execute(statement)
            row = db.execute("SELECT value FROM usage_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
            for target in sorted(v for v in MIGRATIONS if v > version):
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
                version = target
            db.execute("INSERT INTO usage_meta (key, value) VALUES ('schema_version', ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def upsert(self, rows: list[dict]) -> None:
        """Merge a batch of record parts and follow them in the rollup, in one transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = list(dict.fromkeys(r["request_id"] for r in rows))
            before = fetch_rows(self.query, ids)
            for names, values in group_rows(rows).items():
                db.executemany(upsert_sql(names), values)
            sums, counts = rollup_deltas(before, fetch_rows(self.query, ids))
            sums_sql, counts_sql = rollup_sql()
            db.executemany(sums_sql, [key + tuple(values) for key, values in sums.items()])
            db.executemany(counts_sql, [key + (n,) for key, n in counts.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def prune(self, retention_days: int, max_bytes: int | None) -> int:
        """Delete records past the retention, then the oldest while the file is over its cap."""
        cutoff = int((time.time() - retention_days * 86400) * 1000) // SLOT_MS * SLOT_MS
        deleted = self._delete_before(cutoff)
        while max_bytes and self.used_bytes() > max_bytes:
            count = self.db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
            if not count:
                break
            oldest = self.db.execute(f"SELECT ts_ms FROM {TABLE} ORDER BY ts_ms LIMIT 1 OFFSET ?",
                                     (max(count // 10, 1) - 1,)).fetchone()[0]
            deleted += self._delete_before((oldest // SLOT_MS + 1) * SLOT_MS)
        if deleted:
            self.db.execute("PRAGMA incremental_vacuum")
        return deleted

    def _delete_before(self, ts_ms: int) -> int:
        """Records and their rollup before a slot boundary, together (reports stay exact)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.execute(f"DELETE FROM {TABLE} WHERE ts_ms < ?", (ts_ms,)).rowcount
            db.execute(f"DELETE FROM {ROLLUP} WHERE slot < ?", (ts_ms // SLOT_MS,))
            db.execute(f"DELETE FROM {HISTOGRAM} WHERE hour < ?", (ts_ms // HOUR_MS,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return deleted

    def used_bytes(self) -> int:
        pages, free, size = (self.db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        self.db.close()


def database_file(state_root: Path) -> Path:
    return state_root / "usage.sqlite3"


def open_store(database_url: str | None, state_root: Path | None, *, readonly: bool = False) -> Any:
    """The store a config names: PostgreSQL for a ``database_url``, else SQLite in the state folder."""
    if database_url:
        from .usage_pg import PostgresStore

        return PostgresStore(database_url, readonly=readonly)
    assert state_root is not None
    return SqliteStore(database_file(state_root), readonly=readonly)
