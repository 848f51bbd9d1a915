"""Styled lines and simple tables for the launcher, without importing rich.

Importing rich costs ``status`` about a third of its time, so the commands print through
this instead. The output is byte for byte what the rich console of earlier versions wrote
(``soft_wrap=True, highlight=False``; width 200 when piped, the terminal's otherwise):
plain text when the stream is no terminal; on a terminal each styled part as
``ESC[<codes>m...ESC[0m``, with rich's rules for ``FORCE_COLOR``, ``NO_COLOR`` and
``TERM=dumb``. What this cannot lay out exactly as rich would (tabs and control characters,
wide characters in a table, a table wider than the terminal) is handed to rich itself.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

Part = str | tuple[str, str]  # text, or (text, style) with a style like "bold green"

_ATTRIBUTES = {"bold": "1", "dim": "2"}
_COLORS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36"}
_NEEDS_RICH = frozenset(chr(c) for c in range(32) if c != 10) | {"\x7f"}  # tabs, CR, BEL, ...


def _sgr(style: str, colors: bool) -> str:
    codes = [_ATTRIBUTES[w] for w in style.split() if w in _ATTRIBUTES]
    if colors:
        codes += [_COLORS[w] for w in style.split() if w in _COLORS]
    return ";".join(codes)


class Stream:
    """One output stream (stdout or stderr) and how rich would have treated it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._rich = None

    @property
    def file(self) -> TextIO:
        return getattr(sys, self.name)

    def is_terminal(self) -> bool:
        if os.environ.get("FORCE_COLOR") is not None:
            return True
        try:
            return self.file.isatty()
        except (AttributeError, ValueError):
            return False

    def _styles(self) -> bool:
        return self.is_terminal() and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")

    def width(self) -> int:
        if self.is_terminal() and os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
            return 80
        if not self.file.isatty():
            return 200
        columns = os.environ.get("COLUMNS")
        if columns is not None and columns.isdigit():
            return int(columns)
        for fd in (0, 1, 2):
            try:
                return os.get_terminal_size(fd).columns or 80
            except (AttributeError, ValueError, OSError):
                continue
        return 80

    def rich(self):
        """The rich console this stream stands for (imported on first use only)."""
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(file=self.file, stderr=self.name == "stderr", soft_wrap=True, highlight=False,
                                 width=None if self.file.isatty() else 200)
            self._rich.on_broken_pipe = self.reader_gone  # rich's own would exit with status 1
        return self._rich

    def styled(self, text: str, style: str) -> str:
        codes = _sgr(style, "NO_COLOR" not in os.environ) if self._styles() else ""
        if not codes:
            return text
        return "\n".join(f"\x1b[{codes}m{piece}\x1b[0m" if piece else "" for piece in text.split("\n"))

    def line(self, *parts: Part) -> None:
        """Print one line made of plain and styled parts (``rich.text.Text.assemble``)."""
        pairs = [(p, "") if isinstance(p, str) else p for p in parts]
        if any(_NEEDS_RICH.intersection(text) for text, _ in pairs):
            from rich.text import Text

            self.rich().print(Text.assemble(*[(text, style or None) for text, style in pairs]))
            return
        self.write("".join(self.styled(text, style) if style else text for text, style in pairs) + "\n")

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Part]], header_style: str = "bold") -> None:
        """A borderless table, two spaces of padding around each cell (``rich.table.Table(box=None,
        padding=(0, 2))``)."""
        rows = [[(c, "") if isinstance(c, str) else c for c in row] for row in rows]
        widths = [max([len(col)] + [len(row[i][0]) for row in rows]) for i, col in enumerate(columns)]
        cells = [text for row in rows for text, _ in row]
        if sum(widths) + 4 * len(widths) > self.width() or not all(t.isascii() and t.isprintable() for t in cells):
            self._rich_table(columns, rows, header_style)
            return
        lines = ["".join(self.styled("  ", header_style) + self.styled(col.ljust(w), header_style)
                         + self.styled("  ", header_style) for col, w in zip(columns, widths, strict=True))]
        for row in rows:
            lines.append("".join("  " + (self.styled(text, style) if style else text) + " " * (w - len(text)) + "  "
                                 for (text, style), w in zip(row, widths, strict=True)))
        self.write("\n".join(lines) + "\n")

    def _rich_table(self, columns: Sequence[str], rows: list[list[tuple[str, str]]], header_style: str) -> None:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, padding=(0, 2), header_style=header_style)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*[Text.assemble((text, style or None)) for text, style in row])  # style: text only
        self.rich().print(table)

    def write(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
        except BrokenPipeError:
            self.reader_gone()

    def reader_gone(self) -> None:
        """The reader went away (``up --detach | head -1``): the command goes on and finishes
        what it started, and writes nothing more here. The stream is pointed at /dev/null so
        that neither later lines nor Python's flush at exit fail on it."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


out = Stream("stdout")
err = Stream("stderr")


def print_json(data: Any) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def fail(message: str, log_tail: str | None = None) -> None:
    err.line(("✘ ", "bold red"), message)
    if log_tail:
        for line in log_tail.splitlines():
            err.line(("    " + line, "dim"))


def warn(message: str) -> None:
    err.line(("! ", "bold yellow"), message)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
