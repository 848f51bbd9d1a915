"""The docs cannot drift: the key tables of docs/configuration.md are the field table's (every key
with its type, default and bounds), and every relative link in the README, the changelog and docs/
points at a file and heading that exist."""

import re
from pathlib import Path

import pytest

from memory_proxy.config import reference
from memory_proxy.config.fields import FIELDS, TABLE, Type
from memory_proxy.config.model import ConfigError, parse_config
from memory_proxy.config.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"


def accepted_keys() -> dict[str, object]:
    """Every dotted key of our sections the config accepts, with its default (from the field table)."""
    return {f.key: f.default for f in TABLE if f.parent}


def documented_rows() -> dict[str, list[str]]:
    """Table rows of docs/configuration.md keyed by their first cell, a dotted key in backticks."""
    rows: dict[str, list[str]] = {}
    for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `((?:user_id_mappings|memory_proxy)\.[a-z_.\[\]]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def schema_property(dotted: str) -> dict:
    node = json_schema()
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_key_tables_are_generated_from_the_field_table():
    text = CONFIG_DOC.read_text(encoding="utf-8")
    assert reference.documented_sections(text) == reference.sections(), "one generated table per section"
    assert reference.render(text) == text, \
        "docs/configuration.md differs from memory_proxy/config/fields.py: run python -m memory_proxy.config.reference"


def test_every_config_key_is_documented_and_nothing_else():
    assert sorted(documented_rows()) == sorted(accepted_keys())


@pytest.mark.parametrize("key", sorted(accepted_keys()))
def test_documented_default_matches_the_code(key):
    default = accepted_keys()[key]
    cell = documented_rows()[key][1]  # columns: type, default, bounds, os.environ/, what it does
    if FIELDS[key].type == Type.SECTION:
        assert cell == "see below"
    elif key.startswith("user_id_mappings.header_patterns[]."):
        assert cell == "(required)"
    elif default == ():
        assert cell.startswith("`[]`")
    elif default is None:
        assert cell.startswith("`null`")
    elif isinstance(default, bool):
        assert cell.startswith(f"`{str(default).lower()}`")
    else:
        assert cell.startswith(f"`{default}`"), f"{key}: documented {cell!r}, the code says {default!r}"


NUMERIC_KEYS = [k for k, v in accepted_keys().items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
NUMERIC_KEYS.append("memory_proxy.requests_per_minute")


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_documented_bounds_match_the_schema(key):
    prop = schema_property(key)
    numeric = next(option for option in prop["anyOf"] if option.get("type") in ("integer", "number"))
    cell = documented_rows()[key][2]
    low = str(numeric["minimum"])
    assert cell.startswith(low), f"{key}: documented {cell!r}, the schema's minimum is {low}"
    if "maximum" in numeric:
        maximum = numeric["maximum"]
        assert str(maximum) in cell, f"{key}: documented {cell!r}, the schema's maximum is {maximum}"


def _problem_keys(dotted: str, value) -> list[str]:
    *parents, leaf = dotted.split(".")
    text = "model_list: []\n" + "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(parents))
    text += f"{'  ' * len(parents)}{leaf}: {value}\n"
    try:
        parse_config(text, Path("cfg.yaml"), {})
    except ConfigError as exc:
        return [p.key for p in exc.problems]
    return []


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_documented_bounds_are_the_checkers(key):
    """The bounds as written (``low``, an en dash, ``high``) are exactly what the config accepts."""
    cell = documented_rows()[key][2]
    low, high = (float(x) for x in re.match(r"^([0-9.]+) \u2013 ([0-9.]+)", cell).groups())
    integer = FIELDS[key].type == Type.INTEGER
    step = 1 if integer else 0.001
    fmt = (lambda x: str(int(x))) if integer else repr
    assert key not in _problem_keys(key, fmt(low)) and key not in _problem_keys(key, fmt(high))
    assert key in _problem_keys(key, fmt(high + step))
    assert key in _problem_keys(key, fmt(low - step))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
