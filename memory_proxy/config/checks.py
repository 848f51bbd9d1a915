"""Checking our sections, problems collected with their lines so that one does not hide the next."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from memory_proxy.config.env import env_reference
from memory_proxy.config.problems import Problem, dotted

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Checker:
    """Collects problems with their line numbers, and warnings, while our sections are read."""

    def __init__(self, lines: dict[tuple, int], environ: Mapping[str, str]) -> None:
        self.lines = lines
        self.environ = environ
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def fail(self, path: tuple, message: str) -> None:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line:
                break
        self.problems.append(Problem(line, dotted(path), message))

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(path + (key,), f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def resolved(self, value: Any, path: tuple, *, required: bool) -> Any:
        name = env_reference(value)
        if name is None:
            return value
        if self.environ.get(name):
            return self.environ[name]
        if required:
            self.fail(path, f"environment variable {name} is not set")
        return None

    def number(self, section: dict, key: str, path: tuple, default: float, *, integer: bool,
               low: float, high: float) -> Any:
        value = self.resolved(section.get(key, default), path + (key,), required=True)
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                pass
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not (low <= value <= high):
            kind = "an integer" if integer else "a number"
            self.fail(path + (key,), f"must be {kind} between {low:g} and {high:g}, got {value!r}")
            return default
        return value

    def names(self, section: dict, key: str, path: tuple, pattern: re.Pattern[str] | None, what: str, *,
              allowed: tuple[str, ...] = ()) -> list[str]:
        """A list of plain names (host names, origins, route groups), lower-cased."""
        raw = section.get(key) or []
        if not isinstance(raw, list):
            self.fail(path + (key,), f"must be a list, each {what}")
            return []
        found: list[str] = []
        for i, item in enumerate(raw):
            value = item.lower().rstrip("/") if isinstance(item, str) else item
            ok = isinstance(value, str) and (pattern.match(value) if pattern else value in allowed)
            if not ok:
                self.fail(path + (key, i), f"{item!r} is not {what}")
            elif value not in found:
                found.append(value)
        return found

    def client_id(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not CLIENT_ID_RE.match(value):
            self.fail(path, f"{value!r} is not a valid id (letters, digits and . _ : - only, 1-128 characters)")
            return "invalid"
        return value

    def header_name(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not HEADER_NAME_RE.match(value):
            self.fail(path, f"{value!r} is not a valid HTTP header name")
            return "invalid"
        return value.lower()
