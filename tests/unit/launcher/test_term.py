"""memory_proxy.term writes byte for byte what the rich console it replaces wrote."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memory_proxy.launcher import term


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


LINES = [
    [("✔ ", "bold green"), ("LiteLLM Memory Proxy is up on http://127.0.0.1:8764", "bold"), "  (pids: 1, 2)"],
    [("! ", "bold yellow"), "a problem\n- over\n- lines"],
    [("    last words of a log", "dim")],
    [("[litellm]  ", "cyan"), "a line with [brackets] and :smile: and ünïcode"],
    ["a\ttab, a\rcarriage return, an \x1b[31mescape\x1b[0m"],  # handed to rich
    [("multi\nline styled", "dim")],
    [],
]
ROWS = [
    [["memory_proxy", "123", "8764", ("ok, LiteLLM not ready", "yellow"), "5s", "48 MB", "0"],
     ["litellm", "124", "8765", ("ok", "green"), "1m05s", "420 MB", "2"],
     ["supervisor", "122", "-", ("down", "red"), "-", "-", "-"]],
    [["memory_proxy", "-", "8764", ("port held by pid 9 (python3 -m http.server 8764 --bind 127.0.0.1)", "red"),
      "-", "-", "-"]],
    [["ünïcode", "-", "-", ("wide ✓ 漢字", "red"), "-", "-", "-"]],  # handed to rich
]
COLUMNS = ("process", "pid", "port", "health", "uptime", "memory", "restarts")
ENVS = [{}, {"NO_COLOR": "1"}, {"TERM": "dumb"}, {"COLUMNS": "60"}, {"TERM": "xterm-256color", "COLUMNS": "250"}]


def render(tty: bool, draw) -> tuple[str, str]:
    ours, theirs = (Tty() if tty else io.StringIO()), (Tty() if tty else io.StringIO())
    stream = term.Stream("stdout")
    console = Console(file=theirs, soft_wrap=True, highlight=False, width=None if tty else 200)
    draw(stream, console, ours)
    return ours.getvalue(), theirs.getvalue()


@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("env", ENVS + [{"FORCE_COLOR": "1"}])
def test_lines_and_tables_match_rich(monkeypatch, tty, env):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def lines(stream, console, ours):
        monkeypatch.setattr("sys.stdout", ours)
        for parts in LINES:
            stream.line(*parts)
            console.print(Text.assemble(*[(p, None) if isinstance(p, str) else p for p in parts]))

    def tables(stream, console, ours):
        monkeypatch.setattr("sys.stdout", ours)
        for rows in ROWS:
            stream.table(COLUMNS, rows)
            table = Table(box=None, padding=(0, 2), header_style="bold")
            for column in COLUMNS:
                table.add_column(column)
            for row in rows:  # as console.status built it: markup, styled text only
                table.add_row(*[c if isinstance(c, str) else f"[{c[1]}]{c[0]}[/]" for c in row])
            console.print(table)

    for draw in (lines, tables):
        ours, theirs = render(tty, draw)
        assert ours == theirs
        styled = (tty or "FORCE_COLOR" in env) and env.get("TERM") != "dumb"
        assert ("\x1b[1m" in ours) == styled


@pytest.mark.parametrize("rich_path", [False, True])
def test_a_reader_gone_ends_the_output_not_the_command(monkeypatch, rich_path):
    """``up --detach | head -1``: once the pipe's reader has gone, lines are dropped without
    an error (the command goes on) and the stream no longer points at the broken pipe."""
    import os

    read_end, write_end = os.pipe()
    pipe = os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdout", pipe)
    stream = term.Stream("stdout")
    stream.line("first line read")
    assert os.read(read_end, 100) == b"first line read\n"
    os.close(read_end)
    for _ in range(2):
        stream.line("a tab\tgoes through rich" if rich_path else "nobody reads this")
        stream.table(("a",), [["b"]])
    pipe.write("still writable\n")
    pipe.flush()  # /dev/null now: Python's flush at exit cannot fail either
    assert os.path.samestat(os.fstat(pipe.fileno()), os.stat(os.devnull))
    pipe.close()
