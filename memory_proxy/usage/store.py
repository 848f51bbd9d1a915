"""Where usage records live: SQLite in the state folder (default) or PostgreSQL.

Both take the same schema and the same SQL (``?`` placeholders are turned into ``%s``
for psycopg); the schema carries a version in ``usage_meta`` and :data:`MIGRATIONS` brings
an older store up to date when a writer opens it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from memory_proxy.usage.record import ADDED, ASKED, COLUMNS, DAY_MS, EARLIEST, FOLLOWS_TS, INGRESS_MARK, local_day

TABLE = "usage_requests"
log = logging.getLogger("memory_proxy")

SCHEMA_VERSION = 3
INDEXES = {"usage_ts": "ts_ms", "usage_client_ts": "client_id, ts_ms", "usage_model_ts": "model_group, ts_ms"}

# Two rollups of the same sums: per quarter hour (any UTC offset is a whole number of them;
# hourly reports) and per local day (this machine's time zone, DST included; every other
# report). Latency buckets are counted per local day with the same keys (a session's
# percentiles); per quarter hour they would outnumber the records (the hourly time series has none).
SLOT_MS = 900_000
ROLLUP = "usage_rollup"  # by slot
DAILY = "usage_rollup_daily"  # by day
HISTOGRAM = "usage_rollup_latency"  # by day
GROUP_KEYS = ("client_id", "project", "model_group", "provider", "session_id")
ROLLUP_KEYS = ("slot",) + GROUP_KEYS
DAILY_KEYS = ("day",) + GROUP_KEYS
HISTOGRAM_KEYS = DAILY_KEYS
ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cost_usd", "unpriced", "memory_errors", "context_modified", "cloudflare_retries")

def _keys_sql(keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {'BIGINT' if k in ('slot', 'day') else 'TEXT'} NOT NULL" for k in keys)


def create_histogram() -> str:
    return (f"CREATE TABLE IF NOT EXISTS {HISTOGRAM} ({_keys_sql(HISTOGRAM_KEYS)}, kind TEXT NOT NULL, "
            f"bucket INTEGER NOT NULL, n BIGINT NOT NULL DEFAULT 0, "
            f"PRIMARY KEY ({', '.join(HISTOGRAM_KEYS)}, kind, bucket))")


def create_statements() -> list[str]:
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    sums = ", ".join(f"{k} {'DOUBLE PRECISION' if k == 'cost_usd' else 'BIGINT'} NOT NULL DEFAULT 0"
                     for k in ROLLUP_SUMS)
    statements = [f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})",
                  "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value TEXT)"]
    for table, keys in ((ROLLUP, ROLLUP_KEYS), (DAILY, DAILY_KEYS)):
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({_keys_sql(keys)}, {sums}, "
                          f"PRIMARY KEY ({', '.join(keys)}))")
    statements.append(create_histogram())
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({cols})" for name, cols in INDEXES.items()]
    return statements


# The requests whose cost is unknown (the rollups' "unpriced"): a model LiteLLM has no price for,
# or an answered model request without LiteLLM's figures (`up --litellm-url`, a report lost).
# A request refused or failed before a provider, or a model listing, costs nothing.
UNKNOWN_COST = ("SUM(CASE WHEN priced = 0 OR (priced IS NULL AND status < 400 AND COALESCE(api_shape, '') <> 'models') "
                "THEN 1 ELSE 0 END)")
BATCH = "usage_batch"  # a temporary table: the request ids of the batch being written
KNOWN = "usage_known"  # another: those of them already in the store (parts of a record written before)
_SUMS_SQL = ("COUNT(*)", "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)", "SUM(COALESCE(input_tokens, 0))",
             "SUM(COALESCE(output_tokens, 0))", "SUM(COALESCE(cache_read_tokens, 0))",
             "SUM(COALESCE(cache_write_tokens, 0))", "SUM(CASE WHEN priced = 1 THEN COALESCE(cost_usd, 0) ELSE 0 END)",
             UNKNOWN_COST, "SUM(CASE WHEN sm_error IS NULL THEN 0 ELSE 1 END)",
             "SUM(COALESCE(sm_context_modified, 0))", "SUM(COALESCE(cf_retries, 0))")  # ROLLUP_SUMS, in order


def rollup_statements(sign: int, ids: str = BATCH) -> list[str]:
    """Add (sign 1) or take away (sign -1) the records whose ids are in the table ``ids`` in the
    rollups, in SQL: run with -1 for the batch's known records before the batch is merged and
    with 1 for all of them after, the rollups follow the records."""
    in_batch = f"ts_ms IS NOT NULL AND request_id IN (SELECT request_id FROM {ids})"
    groups = [f"COALESCE({k}, '')" for k in GROUP_KEYS]
    statements = []
    for table, time_key, time_sql in ((ROLLUP, "slot", f"ts_ms / {SLOT_MS}"), (DAILY, "day", "day")):
        keys = (time_key,) + GROUP_KEYS
        adds = ", ".join(f"{k} = {table}.{k} + excluded.{k}" for k in ROLLUP_SUMS)
        statements.append(
            f"INSERT INTO {table} ({', '.join(keys)}, {', '.join(ROLLUP_SUMS)}) "
            f"SELECT {time_sql}, {', '.join(groups)}, {', '.join(f'{sign} * {s}' for s in _SUMS_SQL)} "
            f"FROM {TABLE} WHERE {in_batch} GROUP BY {time_sql}, {', '.join(groups)} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {adds}")
    hist_groups = ", ".join(["day"] + groups)
    for kind, column in (("latency", "latency_bucket"), ("first_event", "first_event_bucket")):
        statements.append(
            f"INSERT INTO {HISTOGRAM} ({', '.join(HISTOGRAM_KEYS)}, kind, bucket, n) "
            f"SELECT {hist_groups}, '{kind}', {column}, {sign} * COUNT(*) FROM {TABLE} "
            f"WHERE {in_batch} AND {column} IS NOT NULL GROUP BY {hist_groups}, {column} "
            f"ON CONFLICT ({', '.join(HISTOGRAM_KEYS)}, kind, bucket) DO UPDATE SET n = {HISTOGRAM}.n + excluded.n")
    return statements


def rebuild_rollups() -> list[str]:
    """Every rollup emptied and summed again from the records (a migration that changes a sum)."""
    every = "usage_every"
    return ([f"DELETE FROM {table}" for table in (ROLLUP, DAILY, HISTOGRAM)]
            + [f"CREATE TEMP TABLE IF NOT EXISTS {every} (request_id TEXT PRIMARY KEY)", f"DELETE FROM {every}",
               f"INSERT INTO {every} (request_id) SELECT request_id FROM {TABLE}"]
            + rollup_statements(1, every))


# version -> statements that bring the version before it up to it. Each is written against
# today's tables: a migration that a later one's rebuild covers is left empty.
MIGRATIONS: dict[int, list[str]] = {
    2: [],  # "unpriced" counts answered requests without LiteLLM's figures too: 3's rebuild sums it
    3: [f"DROP TABLE {HISTOGRAM}", create_histogram()] + rebuild_rollups(),  # latency buckets per session
}


def upsert_conflict(names: tuple[str, ...]) -> str:
    """The ``ON CONFLICT`` clause that merges a row into an existing row of the same request
    id: a source only sets its own columns (the ingress's model asked for wins, the earliest time
    is kept, Cloudflare retries of LiteLLM's retries add up)."""
    updates = []
    ingress = INGRESS_MARK in names
    for name in names:
        if name == "request_id":
            continue
        if name in ASKED:
            first, then = ("excluded", TABLE) if ingress else (TABLE, "excluded")
            updates.append(f"{name} = COALESCE({first}.{name}, {then}.{name})")
        elif name in ADDED:
            updates.append(f"{name} = COALESCE({TABLE}.{name}, 0) + COALESCE(excluded.{name}, 0)")
        elif name in EARLIEST or name in FOLLOWS_TS:
            updates.append(f"{name} = CASE WHEN {TABLE}.ts_ms IS NULL OR excluded.ts_ms < {TABLE}.ts_ms "
                           f"THEN excluded.{name} ELSE {TABLE}.{name} END")
        else:
            updates.append(f"{name} = excluded.{name}")
    return f"ON CONFLICT (request_id) DO UPDATE SET {', '.join(updates)}" if updates \
        else "ON CONFLICT (request_id) DO NOTHING"


# Rows in one insert statement: a power of two, and smaller statements for the rest in powers
# of two, so that a connection prepares (and its statement cache keeps) a few shapes, not one per
# batch size (each of those, kept, held hundreds of kB).
MAX_ROWS = 128


def chunk_sizes(count: int) -> list[int]:
    """``count`` rows as statement sizes: ``MAX_ROWS`` while there are that many, then the
    binary digits of the rest (1000 -> 7 x 128, 64, 32, 8)."""
    sizes = [MAX_ROWS] * (count // MAX_ROWS)
    rest = count % MAX_ROWS
    sizes += [1 << bit for bit in reversed(range(rest.bit_length())) if rest & (1 << bit)]
    return sizes


def insert_sql(table: str, names: tuple[str, ...], count: int, conflict: str) -> str:
    """An insert of ``count`` rows in one statement."""
    row = f"({', '.join('?' * len(names))})"
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([row] * count)} {conflict}"


def group_rows(rows: list[dict]) -> dict[tuple[str, ...], list[tuple]]:
    """Rows by their columns (each source writes its own, always in the same order); the
    parts of one request id within a batch merged first. The dicts are the writer's own."""
    merged: dict[str, dict] = {}
    for row in rows:
        if row.get("ts_ms") is not None:
            row["day"] = local_day(row["ts_ms"])
        known = merged.get(row["request_id"])
        if known is None:
            merged[row["request_id"]] = row
            continue
        later = known.get("ts_ms") is not None and row.get("ts_ms") is not None and known["ts_ms"] <= row["ts_ms"]
        ingress = INGRESS_MARK in row
        for name, value in row.items():
            if name in ASKED and (value is None if ingress else known.get(name) is not None):
                continue
            if name in ADDED and known.get(name) is not None:
                known[name] += value or 0
                continue
            if later and (name in EARLIEST or name in FOLLOWS_TS):
                continue
            known[name] = value
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for row in merged.values():
        names = tuple(row)
        group = groups.get(names)
        if group is None:
            unknown = set(names) - COLUMNS.keys()
            if unknown:
                raise ValueError(f"not a usage column: {', '.join(sorted(unknown))}")
            group = groups[names] = []
        group.append(tuple(row.values()))
    return groups


class SqlStore:
    """What both stores do with the same SQL: migrate, merge a batch with its rollups, prune,
    query. A subclass gives the connection (``self.db``), ``execute`` (its placeholders) and, for
    the size cap, ``used_bytes``."""

    begin = "BEGIN"

    def execute(self, sql: str, params: tuple | list = ()):
        return self.db.execute(sql, params)

    def insert(self, table: str, names: tuple[str, ...], rows: list[tuple], conflict: str) -> None:
        """Many rows in a few statements, not one each: SQLite's module lets go of the GIL for
        every statement it runs, and each time the request path's thread has to hand it back
        (measured: a batch of row-at-a-time inserts cost the event loop more than the rows)."""
        start = 0
        for size in chunk_sizes(len(rows)):
            chunk = rows[start:start + size]
            start += size
            self.execute(insert_sql(table, names, size, conflict), [v for row in chunk for v in row])

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
            if version < SCHEMA_VERSION:  # a rebuild takes seconds per million records: say why the writer waits
                log.warning("usage store: bringing schema version %d up to %d", version, SCHEMA_VERSION)
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
            for table in (BATCH, KNOWN):
                self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (request_id TEXT PRIMARY KEY)")
                self.execute(f"DELETE FROM {table}")
            ids = dict.fromkeys(r["request_id"] for r in rows)  # once each: PostgreSQL wants no repeat
            self.insert(BATCH, ("request_id",), [(i,) for i in ids], "ON CONFLICT DO NOTHING")
            self.execute(f"INSERT INTO {KNOWN} (request_id) SELECT b.request_id FROM {BATCH} b "
                         f"JOIN {TABLE} r ON r.request_id = b.request_id")
            for statement in rollup_statements(-1, KNOWN):  # usually none: most records are new
                self.execute(statement)
            for names, values in group_rows(rows).items():
                self.insert(TABLE, names, values, upsert_conflict(names))
            for statement in rollup_statements(1):
                self.execute(statement)
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
            # created 0600 before SQLite opens it: its -wal and -shm files take the database's mode
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash loses no committed batch's integrity
            self._migrate()
            for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                try:  # a store made before the file was created 0600
                    name.chmod(0o600)
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
        from memory_proxy.usage.pg import PostgresStore

        return PostgresStore(database_url, readonly=readonly)
    assert state_root is not None
    return SqliteStore(database_file(state_root), readonly=readonly)
