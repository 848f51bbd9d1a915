"""Read YAML as LiteLLM reads it (PyYAML's safe loader, merge keys included), noting the line of
every key path, so that a problem can name ``file:line``.

Duplicate keys, keys that are lists or mappings and merge keys that name no mapping are
problems here; text that is not YAML, or nested deeper than any config needs, is a ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from memory_proxy.config.problems import ConfigError, Problem, dotted

MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_DEPTH = 100


def read_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int], list[Problem]]:
    """The document's value, the line of each key path (``("memory_proxy", "port")``, list items
    by index) and the problems found while building it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _depth_ok(node)
    except RecursionError:
        raise ConfigError(path, [Problem(None, "<yaml>", "nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(path, [Problem(line, "<yaml>", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    try:
        raw = _construct(node, (), lines, problems, yaml.SafeLoader("")) if node is not None else {}
    except yaml.YAMLError as exc:  # e.g. a tag the safe loader cannot build
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(path, [Problem(mark.line + 1 if mark else None, "<yaml>",
                                         f"not valid here: {getattr(exc, 'problem', exc)}")]) from None
    return raw, lines, problems


def _construct(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[Problem],
               loader: yaml.SafeLoader) -> Any:
    """Build plain Python values from a composed YAML node, noting each key path's line."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        merged: list[tuple[dict, dict[tuple, int]]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # ``<<: *anchor`` (or a list of them): keys written here win
                for source in (value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]):
                    source_lines: dict[tuple, int] = {}
                    value = _construct(source, path, source_lines, problems, loader)
                    if isinstance(value, dict):
                        merged.append((value, source_lines))
                    else:
                        problems.append(Problem(key_node.start_mark.line + 1, dotted(path) + ".<<",
                                                "a merge key (<<) must name a mapping"))
                continue
            key = _construct(key_node, path + ("<key>",), {}, problems, loader)
            try:
                hash(key)
            except TypeError:
                problems.append(Problem(key_node.start_mark.line + 1, dotted(path) or "<top level>",
                                        f"a key must be a plain value, not a {type(key).__name__}"))
                continue
            if key in result:
                problems.append(Problem(key_node.start_mark.line + 1, dotted(path + (key,)), "duplicate key"))
            result[key] = _construct(value_node, path + (key,), lines, problems, loader)
        for value, source_lines in merged:
            for key, item in value.items():
                if key not in result:
                    result[key] = item
                    for where, line in source_lines.items():
                        if where[:len(path) + 1] == path + (key,):
                            lines.setdefault(where, line)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, problems, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _depth_ok(node: yaml.Node, limit: int = MAX_DEPTH) -> None:
    """Raise RecursionError for a document nested deeper than any config needs (the
    reader above recurses once per level)."""
    stack = [(node, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise RecursionError
        if isinstance(item, yaml.MappingNode):
            stack.extend((n, depth + 1) for pair in item.value for n in pair)
        elif isinstance(item, yaml.SequenceNode):
            stack.extend((n, depth + 1) for n in item.value)
