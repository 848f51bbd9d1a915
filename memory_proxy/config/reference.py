"""The key tables of docs/configuration.md, generated from the field table (``fields.py``).

In the page, each table stands between ``<!-- fields: SECTION -->`` and ``<!-- end of fields -->``.
``python -m memory_proxy.config.reference`` rewrites them; tests/unit/test_docs.py fails when the page
and the table differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from memory_proxy.config.fields import TABLE, Env, Field, Type, children

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BLOCK_RE = re.compile(r"(<!-- fields: (\S+) -->\n)(.*?)(<!-- end of fields -->)", re.S)
HEADER = ("| key | type | default | bounds / allowed | `os.environ/` | what it does |\n"
          "| --- | --- | --- | --- | --- | --- |\n")
DASH = "\N{EN DASH}"


def yaml_value(value: Any) -> str:
    """A default as it would be written in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[]" if not value else "[" + ", ".join(map(yaml_value, value)) + "]"
    return str(value)


def type_cell(f: Field) -> str:
    if f.type == Type.CHOICE:
        return " or ".join(f"`{c}`" for c in f.choices)
    if f.type == Type.LIST:
        entries = [e.name for e in children(f.key + "[]")]
        return "list of `{" + ", ".join(entries) + "}`" if entries else "list of strings"
    kind = "list" if f.type == Type.NAMES else f.type
    return f"{kind} or `null`" if f.null and f.default is None and f.type != Type.SECTION else kind


def default_cell(f: Field) -> str:
    if f.type == Type.SECTION:
        return "see below"
    if f.default is None and f.parent.endswith("[]"):
        return "(required)"
    return " ".join(filter(None, (f"`{yaml_value(f.default)}`", f.default_note)))


def bounds_cell(f: Field) -> str:
    if f.type in (Type.INTEGER, Type.SECONDS):  # the note is a parenthesis: (7 days)
        return " ".join(filter(None, (f"{f.low} {DASH} {f.high}", f.allowed)))
    if f.type == Type.SECTION:
        derived = ", ".join(f"`{c.name}`" for c in children(f.key))
    elif f.choices:
        derived = ", ".join(f"`{c}`" for c in f.choices)
    elif f.type == Type.BOOLEAN:
        derived = "`true`, `false`"
    elif f.type == Type.LIST and f.low:
        derived = f"each a string of at least {f.low} characters"
    elif f.type == Type.STRING:
        derived = f.expect
    else:
        derived = ""
    return "; ".join(filter(None, (derived, f.allowed)))


def env_cell(f: Field) -> str:
    if f.env == Env.NO or f.type in (Type.SECTION, Type.BOOLEAN):  # a variable's text is never a boolean
        return "no"
    return "yes, unset: `null`" if f.env == Env.OPTIONAL else "yes"


def row(f: Field) -> str:
    cells = (f"`{f.key}`", type_cell(f), default_cell(f), bounds_cell(f), env_cell(f), f.doc)
    return "| " + " | ".join(cells) + " |\n"


def table(section: str) -> str:
    """The Markdown table of the keys directly under ``section``."""
    return HEADER + "".join(row(f) for f in children(section))


def render(text: str) -> str:
    """The page with each generated table brought up to date."""
    return BLOCK_RE.sub(lambda m: m.group(1) + "\n" + table(m.group(2)) + "\n" + m.group(4), text)


def documented_sections(text: str) -> list[str]:
    return [m.group(2) for m in BLOCK_RE.finditer(text)]


def sections() -> list[str]:
    """Every section that has keys: each needs a table in the page."""
    return list(dict.fromkeys(f.parent for f in TABLE if f.parent))


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        DOC.write_text(new, encoding="utf-8")
    print(f"{DOC}: {'rewritten' if new != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
