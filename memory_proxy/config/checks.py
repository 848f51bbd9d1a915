"""Checking our sections against the field table (``fields.py``), problems collected with their lines.

A value is read as its entry says: its type, bounds or pattern, whether an ``os.environ/NAME``
reference is read there, and what a wrong value falls back to (the default), so that one
problem does not hide the next. What involves more than one key (the two ports, front-door
keys for a non-loopback host, ...) is checked where the typed model is built (``model.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from memory_proxy.config.env import env_reference
from memory_proxy.config.fields import Env, Field, Type, keys
from memory_proxy.config.problems import Problem, dotted
from memory_proxy.config.secrets import literal_warning


class Checker:
    """Collects problems with their line numbers, and warnings, while our sections are read."""

    def __init__(self, lines: dict[tuple, int], environ: Mapping[str, str]) -> None:
        self.lines = lines
        self.environ = environ
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def line(self, path: tuple) -> int | None:
        """The line of ``path``, else of the nearest key above it that has one."""
        return next((self.lines[path[:cut]] for cut in range(len(path), -1, -1) if self.lines.get(path[:cut])), None)

    def fail(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.line(path), dotted(path), message))

    def warn_literal(self, path: tuple, **kwargs: str) -> None:
        """Warn about a secret written into the config at ``path``, naming its line."""
        line = self.line(path)
        self.warnings.append(literal_warning(f"{dotted(path)}{f' (line {line})' if line else ''}", **kwargs))

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

    def section(self, value: Any, f: Field) -> dict:
        """A section of ours: a mapping of the keys the table has under it (null: all defaults)."""
        return self.mapping(value, f.path, keys(f.key))

    def resolved(self, value: Any, path: tuple, *, required: bool) -> Any:
        name = env_reference(value)
        if name is None:
            return value
        if self.environ.get(name):
            return self.environ[name]
        if required:
            self.fail(path, f"environment variable {name} is not set")
        return None

    def read(self, section: dict, f: Field) -> Any:
        """The value of ``f`` in its section (its default when left out), checked."""
        return self.check(f, section.get(f.name, f.default), f.path)

    def check(self, f: Field, value: Any, path: tuple) -> Any:
        """``value`` if the table allows it at ``path``; else a problem, and what stands in for it."""
        if f.type in (Type.INTEGER, Type.SECONDS):
            return self._number(f, value, path)
        if f.type == Type.NAMES:
            return self._names(f, value, path)
        if f.env != Env.NO:
            value = self.resolved(value, path, required=f.env == Env.REQUIRED)
        if f.type == Type.BOOLEAN:
            if not isinstance(value, bool):
                self.fail(path, f"must be true or false, got {value!r}")
                return f.default
        elif f.type == Type.CHOICE:
            if value not in f.choices:
                self.fail(path, f"must be one of {', '.join(f.choices)}, got {value!r}")
                return f.default
        elif f.type == Type.STRING:
            if value is None and f.null:
                return None
            if not isinstance(value, str) or not value or (f.pattern and not re.match(f.pattern, value)):
                self.fail(path, f.message or f"must be {f.expect}, got {value!r}")
                return f.default
        elif f.type in (Type.HEADER, Type.CLIENT_ID):
            if not isinstance(value, str) or not re.fullmatch(f.pattern, value) or (
                    f.type == Type.CLIENT_ID and not value.strip(".")):
                self.fail(path, f"{value!r} is not {f.expect}")
                return "invalid"
            return value.lower() if f.type == Type.HEADER else value
        else:
            raise ValueError(f"{f.key}: a {f.type} is read by its own code")
        return value

    def _number(self, f: Field, value: Any, path: tuple) -> Any:
        if value is None and f.null:  # null (or left out): no limit; an unset reference is still an error
            return None
        if f.env != Env.NO:
            value = self.resolved(value, path, required=f.env == Env.REQUIRED)
        integer = f.type == Type.INTEGER
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                pass
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not (f.low <= value <= f.high):
            kind = "an integer" if integer else "a number"
            self.fail(path, f"must be {kind} between {f.low:g} and {f.high:g}, got {value!r}")
            return f.default
        return value

    def _names(self, f: Field, value: Any, path: tuple) -> tuple[str, ...]:
        """A list of plain names (host names, origins, route groups), lower-cased, each once."""
        raw = value or []
        if not isinstance(raw, list):
            self.fail(path, f"must be a list, each {f.expect}")
            return ()
        found: list[str] = []
        for i, item in enumerate(raw):
            value = item.lower().rstrip("/") if isinstance(item, str) else item
            ok = isinstance(value, str) and (re.fullmatch(f.pattern, value) if f.pattern else value in f.choices)
            if not ok:
                self.fail(path + (i,), f"{item!r} is not {f.expect}")
            elif value not in found:
                found.append(value)
        return tuple(found)
