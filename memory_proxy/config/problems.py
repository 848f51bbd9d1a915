"""What is wrong with a config: ``file:line: key.path: what is wrong``, every problem at once.
A value quoted back has its secrets masked (a URL's password, a key in a query string, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memory_proxy.config.secrets import mask_text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: its line (if known), key path and what is wrong."""

    line: int | None
    key: str
    message: str


class ConfigError(Exception):
    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = [Problem(p.line, p.key, mask_text(p.message)) for p in problems]
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.path}: {len(self.problems)} problem(s) in the config:"]
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line else str(self.path)
            lines.append(f"  {where}: {p.key}: {p.message}")
        return "\n".join(lines)


def dotted(path: tuple) -> str:
    """A key path as a problem names it: ``memory_proxy.api_keys[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"
