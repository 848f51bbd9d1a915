"""The usage store on PostgreSQL (``memory_proxy.usage.database_url``), through psycopg 3.

Same schema and SQL as SQLite (``store.SqlStore``); only the placeholders (``?`` -> ``%s``)
and the pruning differ (no size cap). psycopg is imported only when a PostgreSQL store is
configured.
"""

from __future__ import annotations

from memory_proxy.usage.store import SqlStore


def _sql(sql: str) -> str:
    return sql.replace("?", "%s")  # no statement of ours has a literal "?" or "%"


class PostgresStore(SqlStore):
    def __init__(self, url: str, *, readonly: bool = False) -> None:
        import psycopg

        # autocommit: transactions are the store's own BEGIN/COMMIT, as with SQLite. TCP keepalives
        # and a user timeout: a server that vanished (host down, network cut) fails the writer's
        # call within about a minute, then it reconnects; until then `status` reports it as slow.
        self.db = psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="memory-proxy-usage",
                                  keepalives=1, keepalives_idle=20, keepalives_interval=10, keepalives_count=3,
                                  tcp_user_timeout=60_000)
        if readonly:
            self.db.execute("SET default_transaction_read_only = on")
        else:
            self._migrate()

    def execute(self, sql: str, params: tuple | list = ()):
        return self.db.execute(_sql(sql), params)

    def _migrate(self) -> None:
        # Two writers starting at once (two proxies on one database) must not race on CREATE.
        self.execute("SELECT pg_advisory_lock(727017)")
        try:
            super()._migrate()
        finally:
            self.execute("SELECT pg_advisory_unlock(727017)")

    def prune(self, retention_days: int, max_bytes: int | None) -> int:
        """The retention only, never the size cap: a DELETE does not shrink PostgreSQL's files
        (the space is reused, not given back), so a size measured again after each day deleted
        would stay over the cap until the table is empty. The server's disk is its
        administrator's."""
        return super().prune(retention_days, None)
