"""The docs cannot drift: every config key is in docs/configuration.md with its default and
bounds, and every relative link in the README, the changelog and docs/ points at a file and heading that exist."""

import dataclasses
import re
from pathlib import Path

import pytest

from memory_proxy.config.model import (
    MAPPING_KEYS,
    OTEL_KEYS,
    PROXY_KEYS,
    SUPERMEMORY_KEYS,
    USAGE_KEYS,
    ConfigError,
    OtelConfig,
    ProxySettings,
    SupermemorySettings,
    Timeouts,
    UsageSettings,
    UserIdMappings,
    parse_config,
)
from memory_proxy.config.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
TIMEOUT_KEYS = tuple(f.name for f in dataclasses.fields(Timeouts))


def accepted_keys() -> dict[str, object]:
    """Every dotted key of our sections the config accepts, with its default."""
    keys: dict[str, object] = {}
    for key in MAPPING_KEYS:
        keys[f"user_id_mappings.{key}"] = getattr(UserIdMappings, key)
    for key in PROXY_KEYS:
        keys[f"memory_proxy.{key}"] = getattr(ProxySettings, key)
    for key in TIMEOUT_KEYS:
        keys[f"memory_proxy.timeouts.{key}"] = getattr(Timeouts, key)
    for key in SUPERMEMORY_KEYS:
        keys[f"memory_proxy.supermemory.{key}"] = getattr(SupermemorySettings, key)
    for key in USAGE_KEYS:
        keys[f"memory_proxy.usage.{key}"] = getattr(UsageSettings, key)
    for key in OTEL_KEYS:
        keys[f"memory_proxy.otel.{key}"] = getattr(OtelConfig, key)
    return keys


def documented_rows() -> dict[str, list[str]]:
    """Table rows of docs/configuration.md keyed by their first cell, a dotted key in backticks."""
    rows: dict[str, list[str]] = {}
    for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `((?:user_id_mappings|memory_proxy)\.[a-z_.]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def schema_property(dotted: str) -> dict:
    node = json_schema()
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_every_config_key_is_documented_and_nothing_else():
    assert sorted(documented_rows()) == sorted(accepted_keys())


@pytest.mark.parametrize("key", sorted(accepted_keys()))
def test_documented_default_matches_the_code(key):
    default = accepted_keys()[key]
    cell = documented_rows()[key][1]  # columns: type, default, bounds, what it does
    if key == "memory_proxy.supermemory.api_key":  # unset in the dataclass, read from this reference
        default = schema_property(key)["default"]
    if dataclasses.is_dataclass(default):
        assert cell == "see below"
    elif default == ():
        assert cell.startswith("`[]`")
    elif default is None:
        assert cell.startswith("`null`")
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
    integer = isinstance(accepted_keys()[key], int) or key == "memory_proxy.requests_per_minute"
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
