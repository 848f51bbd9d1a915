"""The processes' log files: their tail, and following them as they grow."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def rotate(path: Path, limit: int) -> bool:
    """Once ``path`` is over ``limit`` bytes, copy it to ``<name>.1`` (replacing the previous one)
    and truncate it in place: the processes writing it keep their descriptor, opened for
    appending, so their next line lands at its start. True when it rotated. A line written
    between the copy and the truncation is lost (logrotate's copytruncate has the same window)."""
    try:
        if path.stat().st_size <= limit:
            return False
        older = path.with_name(path.name + ".1")
        partial = older.with_name(older.name + ".tmp")
        with open(path, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(1024 * 1024):
                dst.write(chunk)
            os.truncate(path, 0)
        os.replace(partial, older)
    except OSError:  # gone, or no room for the copy: the log keeps growing until there is
        return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if there is none, or ``lines`` is 0 or less)."""
    if lines <= 0:
        return ""  # (a slice [-0:] would be the whole file)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def follow(paths: Mapping[str, Path], stop: threading.Event, *, from_end: bool = True,
           poll: float = 0.2) -> Iterator[tuple[str, str]]:
    """Yield ``(name, line)`` as lines are appended to any of ``paths`` until ``stop`` is set.
    Copes with files that appear later, are truncated or are rotated."""
    handles: dict[str, Any] = {}
    inodes: dict[str, int] = {}
    partial: dict[str, str] = dict.fromkeys(paths, "")
    first = True
    try:
        while not stop.is_set():
            got = False
            for name, path in paths.items():
                try:
                    st = path.stat()
                except OSError:
                    continue
                f = handles.get(name)
                if f is None or inodes.get(name) != st.st_ino or st.st_size < f.tell():
                    if f is not None:
                        f.close()
                    if partial[name]:  # the old file's unfinished last line
                        yield name, partial[name]
                        partial[name] = ""
                    f = handles[name] = open(path, "rb")  # noqa: SIM115 (kept open across reads; closed below)
                    inodes[name] = st.st_ino
                    if first and from_end:
                        f.seek(0, os.SEEK_END)
                chunk = f.read(256 * 1024)
                if not chunk:
                    continue
                got = True
                text = partial[name] + chunk.decode("utf-8", "replace")
                *complete, partial[name] = text.split("\n")
                for line in complete:
                    yield name, line.rstrip("\r")
            first = False
            if not got:
                stop.wait(poll)
    finally:
        for f in handles.values():
            f.close()
