"""`check`, `route` and `schema`: what the config says, starting nothing."""

from __future__ import annotations

import re

from memory_proxy.config.fields import HEADER_NAME_PATTERN
from memory_proxy.config.hosts import connect_host
from memory_proxy.launcher.context import Context
from memory_proxy.launcher.litellm_binary import find_litellm, litellm_missing
from memory_proxy.launcher.term import fail, out, print_json, warn

HEADER_NAME_RE = re.compile(HEADER_NAME_PATTERN)


def check(ctx: Context, as_json: bool) -> int:
    from memory_proxy.config.model import ConfigError, load_config

    try:
        config = load_config(ctx.config)
    except ConfigError as exc:
        if as_json:
            print_json({"ok": False, "message": exc.render(),
                         "problems": [{"line": p.line, "key": p.key, "message": p.message} for p in exc.problems]})
        else:
            fail(exc.render())
        return 2
    from memory_proxy.config import litellm as litellm_config

    generated = litellm_config.build_litellm_config(
        config, litellm_config.egress_base(config.proxy.port, connect_host(config.proxy.host)))
    masked = litellm_config.mask_secrets(generated)
    binary = find_litellm()
    problems = [] if binary else [litellm_missing()]  # (no key, no line: the config is fine)
    missing = config.missing_keys()
    if as_json:
        listed = [{"line": None, "key": None, "message": p} for p in problems]
        print_json({"ok": not problems, "problems": listed, "warnings": list(config.warnings),
                     "litellm": str(binary) if binary else None, "models_missing_keys": missing,
                     "supermemory_backed": config.supermemory_groups, "generated_config": masked})
        return 0 if not problems else 1
    out.line(("✔ ", "bold green"), f"{ctx.config} is valid")
    for warning in config.warnings:
        warn(warning)
    for problem in problems:
        fail(problem)
    out.line(f"Supermemory-backed model groups: {', '.join(config.supermemory_groups) or '(none)'}")
    out.line(f"litellm executable: {binary or '(not found)'}")
    out.line(("# generated LiteLLM config (secrets masked; written to the state folder by `up`):", "dim"))
    out.line(litellm_config.render(masked, config.path).rstrip())
    return 0 if not problems else 1


def client_headers(user_agent: str | None, headers: list[str]) -> dict[str, str]:
    """``--user-agent`` and ``--header NAME:VALUE`` options as the server would read a request
    carrying them (lower-case names): a header given twice counts by its first value, as the
    server's ``request.headers.get`` reads it; a name that is not an HTTP token (a space in it),
    which the server refuses with 400 ``invalid_http``, is a ValueError naming it."""
    given: dict[str, str] = {}
    for item in headers:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise ValueError(f"--header wants NAME:VALUE, got {item!r}")
        if not HEADER_NAME_RE.fullmatch(name):
            raise ValueError(f"--header {name!r} is not a valid HTTP header name (the server would answer 400 "
                             "invalid_http): letters, digits and !#$%&'*+.^_`|~- only, no spaces")
        given.setdefault(name.lower(), value.strip(" \t"))
    if user_agent is not None:
        given["user-agent"] = user_agent
    return given


def route(ctx: Context, user_agent: str | None, headers: list[str], path: str, as_json: bool) -> int:
    from memory_proxy.config.model import ConfigError, load_config
    from memory_proxy.server.routing import resolve

    try:
        config = load_config(ctx.config)
        given = client_headers(user_agent, headers)
        resolution = resolve(config.user_id_mappings, given, path)
    except (ConfigError, ValueError) as exc:  # InvalidClientId is a ValueError
        message = exc.render() if isinstance(exc, ConfigError) else str(exc)
        if as_json:
            print_json({"ok": False, "error": message})
        else:
            fail(message)
        return 2
    dropped = sorted(n for n in given if n.startswith(("x-sm-", "x-supermemory-")))
    if as_json:
        print_json({"ok": True, "user_id": resolution.user_id, "source": resolution.source,
                     "reason": resolution.detail, "path": resolution.path, "dropped_headers": dropped})
        return 0
    out.line("memory id: ", (resolution.user_id, "bold"), f"  ({resolution.detail})")
    if resolution.path != path:
        out.line(f"LiteLLM sees the path: {resolution.path}")
    if dropped:
        out.line(f"dropped (clients cannot pick a memory by them): {', '.join(dropped)}")
    return 0


def schema() -> int:
    from memory_proxy.config.schema import json_schema

    print_json(json_schema())
    return 0

