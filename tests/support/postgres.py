"""A throw-away PostgreSQL cluster: Debian's ``initdb`` and ``pg_ctl`` in a temporary folder,
on a free port, trust authentication (no password anywhere), for the tests of the usage
store on a real server (``tests/test_usage_pg.py``, and ``tests/e2e/test_usage.py`` through
the launcher)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

# Debian's server binaries, the newest version installed (None: none is)
_INITDB = max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), default=None)
PG_BIN = Path(_INITDB).parent if _INITDB else None
TABLES = ("usage_requests", "usage_rollup", "usage_rollup_daily", "usage_rollup_latency")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root, self.data, self.port = root, root / "data", free_port()
        self.url = f"postgresql://usage@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: the cluster belongs to the postgres system user then
        self.user = "postgres" if os.geteuid() == 0 else None

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "usage", "--no-sync")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: the server ends every session and stops at once."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every server process quits at once, without a checkpoint,
        as if killed; the next start recovers from the write-ahead log."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        """``sql``'s rows as dicts, on a connection of its own."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as db:
            cursor = db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def stored_bytes(self) -> bytes:
        """Every byte the server keeps on disk (tables and write-ahead log), after a checkpoint."""
        self.query("CHECKPOINT")
        return b"".join(p.read_bytes() for folder in ("base", "pg_wal") for p in sorted((self.data / folder).rglob("*"))
                        if p.is_file())


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A cluster, initialised and started; stopped and removed afterwards (fails the test when
    the server's binaries are missing: ``scripts/run_tests.py`` installs them)."""
    if PG_BIN is None:
        pytest.fail("PostgreSQL's server binaries are missing: scripts/run_tests.py installs Debian's postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root without runuser: initdb cannot run as root")
    root = Path(tempfile.mkdtemp(prefix="usage-pg-", dir="/tmp"))  # short: the socket path must fit 107 bytes
    try:
        pg = Cluster(root)
        pg.init()
        pg.start()
        try:
            yield pg
        finally:
            if pg.running():
                pg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
