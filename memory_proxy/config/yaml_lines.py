"""Read YAML as LiteLLM reads it (PyYAML's safe loader, merge keys included), noting the line of
every key path, so that a problem can name ``file:line``.

Duplicate keys, keys that are lists or mappings and merge keys that name no mapping are
problems here; text that is not YAML, nested deeper than any config needs, or whose aliases
expand to more values than any config needs (an "alias bomb": a few hundred bytes of ``*alias``
references that would take minutes and gigabytes to build) is a ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from memory_proxy.config.problems import ConfigError, Problem, dotted

MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_DEPTH = 100
MAX_VALUES = 100_000  # the values the document expands to through its aliases (a large config has a few thousand)


def read_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int], list[Problem]]:
    """The document's value, the line of each key path (``("memory_proxy", "port")``, list items
    by index) and the problems found while building it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            sizes = _sizes(node)
            if sizes[id(node)] > MAX_VALUES:
                line, key = _where_too_large(node, sizes)
                raise ConfigError(path, [Problem(line, key, f"expands to more than {MAX_VALUES:,} values through "
                                                            "its aliases (*name); refused")])
    except RecursionError:
        raise ConfigError(path, [Problem(None, "<yaml>", "nested too deeply")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...): at its line
        line = text[:exc.position].count("\n") + 1
        shown = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(path, [Problem(line, "<yaml>", f"not valid YAML: character {shown} is not "
                                                         "allowed")]) from None
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


def _sizes(root: yaml.Node) -> dict[int, int]:
    """The number of values each node expands to (itself and everything under it, aliases
    expanded), memoised per node object so that shared anchors are walked once. Raise
    RecursionError for a document nested deeper than MAX_DEPTH, or one that contains itself
    (the reader recurses once per level)."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            heights[key] = 1 + max((heights[id(c)] for c in children), default=0)
            if heights[key] > MAX_DEPTH:
                raise RecursionError
            continue
        if key in sizes:
            continue
        if key in open_nodes:  # an alias inside its own anchor: endless
            raise RecursionError
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _where_too_large(node: yaml.Node, sizes: dict[int, int]) -> tuple[int, str]:
    """The line and key path of the first value written in the file that expands past
    MAX_VALUES on its own (descending into an alias no further); the top level if none does."""
    path: tuple = ()
    line = node.start_mark.line + 1
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if isinstance(node, yaml.MappingNode):  # a key: named by its text, at its own line
            items = [(k.value if isinstance(k, yaml.ScalarNode) else "<key>", k.start_mark.line + 1, v)
                     for k, v in node.value]
        else:
            items = [(i, v.start_mark.line + 1, v) for i, v in enumerate(node.value)]
        child = next((item for item in items if sizes[id(item[2])] > MAX_VALUES), None)
        if child is None:
            break
        path += (child[0],)
        line = child[1]
        if child[2].start_mark.index < node.start_mark.index:  # an alias: its anchor is elsewhere
            break
        node = child[2]
    return line, dotted(path)
