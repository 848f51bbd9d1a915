"""A JSON Schema of the whole config file, for editors (``start_proxies.py schema``).

Our sections are generated from the field table (``fields.py``), so they say what the loader
accepts; LiteLLM's sections are described only loosely (LiteLLM owns them).
"""

from __future__ import annotations

import re
from typing import Any

from memory_proxy.config.fields import Env, Field, Type, children

ENV_REF = {"type": "string", "pattern": "^os\\.environ/[A-Za-z_][A-Za-z0-9_]*$"}
_NULL = {"type": "null"}

# LiteLLM's sections: only what the memory proxy itself reads or refuses.
_LITELLM_SECTIONS: dict[str, Any] = {
    "model_list": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["model_name", "litellm_params"],
            "properties": {
                "model_name": {"type": "string", "minLength": 1},
                "litellm_params": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": {"type": "string"},
                        "api_base": {"type": "string", "description":
                                     "starts with memory_proxy.supermemory.base_url: Supermemory-backed"},
                        "api_key": {"type": "string"},
                        "extra_headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    },
    "general_settings": {"type": "object", "properties": {
        "forward_client_headers_to_llm_api": {"const": False, "description":
                                              "set per Supermemory-backed group by the memory proxy"},
    }},
    "litellm_settings": {"type": "object"},
    "router_settings": {"type": "object"},
    "environment_variables": {"type": "object"},
}


def _plain(doc: str) -> str:
    """A table description without its Markdown links: ``[usage](usage.md)`` -> ``usage``."""
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", doc)


def _value(f: Field) -> dict[str, Any]:
    """What a value of ``f`` may be, before references and null."""
    if f.type in (Type.INTEGER, Type.SECONDS):
        return {"type": "integer" if f.type == Type.INTEGER else "number", "minimum": f.low, "maximum": f.high}
    if f.type == Type.BOOLEAN:
        return {"type": "boolean"}
    if f.type == Type.CHOICE:
        return {"enum": list(f.choices)}
    if f.type == Type.NAMES:
        item = {"type": "string", "pattern": f.pattern} if f.pattern else {"enum": list(f.choices)}
        return {"type": "array", "items": item}
    if f.type == Type.LIST:
        entries = children(f.key + "[]")
        if entries:
            return {"type": "array", "items": _section(f.key + "[]", required=[e.name for e in entries])}
        item = {"type": "string", "minLength": f.low} if f.low else {"type": "string"}
        return {"type": "array", "items": {"anyOf": [item, ENV_REF]} if f.env != Env.NO else item}
    if f.type == Type.SECTION:
        return _section(f.key)
    if f.type == Type.REGEX:
        return {"type": "string"}
    return {"type": "string", "pattern": f.pattern} if f.pattern else {"type": "string", "minLength": 1}


def _property(f: Field) -> dict[str, Any]:
    options = [_value(f)]
    # A variable's text is never a boolean; a list's references are its items.
    if f.env != Env.NO and f.type not in (Type.BOOLEAN, Type.LIST):
        options.append(ENV_REF)
    if f.null and f.type != Type.SECTION:
        options.append(_NULL)
    prop: dict[str, Any] = dict(options[0]) if len(options) == 1 else {"anyOf": options}
    if f.type == Type.SECTION and f.null:
        prop["type"] = ["object", "null"]  # null: every key its default
    if f.type not in (Type.SECTION, Type.REGEX) and (f.default is not None or f.null):
        prop["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    if f.doc:
        prop["description"] = _plain(f.doc)
    return prop


def _section(parent: str, required: list[str] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "object", "additionalProperties": False,
                            "properties": {f.name: _property(f) for f in children(parent)}}
    if required:
        node["required"] = required
    return node


def json_schema() -> dict:
    ours = {f.key: _property(f) for f in children("")}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LiteLLM Memory Proxy config",
        "type": "object",
        "properties": {**_LITELLM_SECTIONS, **ours},
    }
