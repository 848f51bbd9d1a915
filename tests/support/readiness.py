"""Waiting, with a bound: for a condition, or for an HTTP endpoint to answer. The bounds are
against hangs, not timing claims."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def until(predicate: Callable[[], T], what: str, timeout: float = 20.0, every: float = 0.02) -> T:
    """Polls ``predicate`` until it returns something true, and returns that; fails the test
    (AssertionError) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(every)
    return value


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float = 0.05) -> T:
    """Calls ``fetch`` until ``done`` holds for its value or ``timeout`` seconds have passed,
    and returns the last value: the caller asserts on it (and shows it when it fails)."""
    deadline = time.monotonic() + timeout
    while not done(value := fetch()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def wait_http(url: str, *, timeout: float = 20.0, ok: Container[int] | None = (200,),
              proc: subprocess.Popen | None = None, log: Path | None = None, every: float = 0.1) -> httpx.Response:
    """Polls ``GET url`` until it answers with a status in ``ok`` (``None``: any status) and
    returns that answer. Raises RuntimeError when ``proc`` exits first or ``timeout`` seconds
    pass, with the end of ``log`` if given."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            command = " ".join(map(str, proc.args[:3]))
            raise RuntimeError(f"{command} exited ({proc.returncode}) before {url} answered" + _tail(log))
        try:
            answer = httpx.get(url, timeout=2, trust_env=False)
            if ok is None or answer.status_code in ok:
                return answer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout:g} s" + _tail(log))
        time.sleep(every)


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text(errors='replace')[-2000:]}" if log is not None and log.exists() else ""
