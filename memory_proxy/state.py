"""The state folder of one installation and crash-safe writes into it.

Everything one installation keeps between runs lives here (process records, logs, the
generated LiteLLM config, the master key, the cookie jar), so two installations or two
test runs never share state. Default: ``$XDG_STATE_HOME/litellm-memory-proxy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from memory_proxy.names import LOG_FILES, MASTER_KEY_ENV, STATE_DIR_ENV


def default_state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "litellm-memory-proxy"


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Write to a temporary file beside ``path`` and rename it over: a crash mid-write
    leaves the old file or the new one, never a torn one."""
    import tempfile  # (and random, shutil): writers only, not `status`

    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def discard_partial_writes(path: Path) -> None:
    """Remove the temporary files of writes of ``path`` that a SIGKILL interrupted (the file
    itself is whole: the rename never happened). Call only where no other writer of ``path``
    runs, i.e. when its one owner starts."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass


def _file(name: str) -> property:
    """A ``StateDir`` property: the path of one file directly in the folder."""
    return property(lambda state: state.root / name, doc=f"``<state folder>/{name}``")


class StateDirError(Exception):
    """The state folder (or its ``logs`` folder) cannot be one: a file is there, or it cannot be made."""


@dataclass(frozen=True)
class StateDir:
    root: Path

    def ensure(self) -> StateDir:
        """Create the folder and its ``logs`` folder; StateDirError, naming the path, when they cannot be."""
        problem = self.problem()
        if problem:
            raise StateDirError(problem)
        for folder in (self.root, self.logs):
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StateDirError(f"cannot create the state folder {folder}: {exc.strerror or exc}") from None
        return self

    def problem(self) -> str | None:
        """Why this cannot be a state folder, found without creating anything (None: it can be)."""
        for folder in (self.root, self.logs):
            if folder.exists() and not folder.is_dir():
                return (f"the state folder {folder} is not a folder" if folder == self.root else
                        f"the state folder's {folder} is not a folder (move it away)")
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"the state folder {self.root} cannot be made: {existing} is not a folder"
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            return f"the state folder {self.root} cannot be written: {existing} is not writable"
        return None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    cookie_jar = _file("supermemory_cookies.json")
    master_key_file = _file("litellm_master_key")
    litellm_config = _file("litellm_config.generated.yaml")
    processes = _file("processes.json")

    def restarts(self, name: str) -> int:
        """How often the launcher restarted process ``name``, as its record says (0: no record)."""
        import json  # here: `start_proxies.py --help` needs no JSON

        try:
            entry = json.loads(self.processes.read_text()).get("processes", {}).get(name) or {}
        except (OSError, ValueError, AttributeError):
            return 0
        restarts = entry.get("restarts") if isinstance(entry, dict) else None
        return restarts if isinstance(restarts, int) else 0

    def process_log(self, process: str) -> Path:
        """The log file of a process (``names.PROCESSES``)."""
        return self.log_file(LOG_FILES[process])

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def master_key(self, environ: dict[str, str] | None = None) -> str:
        """``LITELLM_MASTER_KEY`` if set, else a strong key generated once and kept (mode 0600)."""
        environ = os.environ if environ is None else environ
        if environ.get(MASTER_KEY_ENV):
            return environ[MASTER_KEY_ENV]
        discard_partial_writes(self.master_key_file)  # a torn key from a killed first start
        try:
            key = self.master_key_file.read_text().strip()
            if key:
                return key
        except FileNotFoundError:
            pass
        import secrets

        key = "sk-mp-" + secrets.token_urlsafe(32)
        atomic_write(self.master_key_file, key + "\n")
        return key
