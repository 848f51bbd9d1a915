"""What the memory proxy checks in LiteLLM's own sections, and what it learns from ``model_list``:
which models are Supermemory-backed and which are disabled for an unset variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memory_proxy.config.checks import Checker
from memory_proxy.config.env import env_reference, missing_env, resolve_env
from memory_proxy.config.fields import DEFAULT_SUPERMEMORY_URL, SUPERMEMORY_KEY_REFERENCE


@dataclass(frozen=True)
class ModelInfo:
    """A deployment of ``model_list``: its group, whether it goes through Supermemory, and the
    variables it needs that are unset (then it is left out of LiteLLM)."""

    model_name: str
    supermemory_backed: bool
    missing_env: tuple[str, ...] = ()


def is_supermemory_backed(api_base: Any, supermemory_base: str) -> bool:
    """Only the router's form, ``<base_url>/v3/<provider URL>``, is Supermemory's: an ordinary
    model that merely lives under the same host and path must never get the memory headers."""
    return isinstance(api_base, str) and api_base.startswith(supermemory_base + "/v3/")


def _supermemory_section(raw: dict) -> dict:
    section = raw.get("memory_proxy") if isinstance(raw.get("memory_proxy"), dict) else {}
    return section.get("supermemory") if isinstance(section.get("supermemory"), dict) else {}


def supermemory_base(raw: dict, environ: Mapping[str, str]) -> str:
    """``memory_proxy.supermemory.base_url`` as the models are judged by (checked with our sections)."""
    value = resolve_env(_supermemory_section(raw).get("base_url", DEFAULT_SUPERMEMORY_URL), environ)
    return str(value or DEFAULT_SUPERMEMORY_URL).rstrip("/")


def supermemory_key_missing(raw: dict, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variable named by supermemory.api_key when it is unset (it then disables the backed models)."""
    name = env_reference(_supermemory_section(raw).get("api_key", SUPERMEMORY_KEY_REFERENCE))
    return (name,) if name and not environ.get(name) else ()


def check_models(c: Checker, raw: Any, supermemory_base: str, supermemory_missing: tuple[str, ...]) -> list[ModelInfo]:
    """``model_list``: each entry's name, whether it is Supermemory-backed and which of its variables
    are unset (it is then disabled); a model group may not mix backed and ordinary deployments."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        c.fail(("model_list",), "must be a list of models")
        return []
    models: list[ModelInfo] = []
    for i, item in enumerate(raw):
        path = ("model_list", i)
        if not isinstance(item, dict) or not isinstance(item.get("litellm_params"), dict):
            c.fail(path, "must be a mapping with model_name and litellm_params")
            continue
        name = item.get("model_name")
        if not isinstance(name, str) or not name:
            c.fail(path + ("model_name",), "is required" if name is None else
                   f"must be a non-empty string, got {name!r}")
            continue
        params = item["litellm_params"]
        if not params.get("model"):
            c.fail(path + ("litellm_params", "model"), "is required")
        api_base = resolve_env(params.get("api_base"), c.environ)
        backed = is_supermemory_backed(api_base, supermemory_base)
        missing = tuple(missing_env({k: v for k, v in params.items() if k != "api_base"}, c.environ))
        if env_reference(params.get("api_base")) and api_base is None:
            missing += (env_reference(params["api_base"]),)
        if backed:
            missing += supermemory_missing
        models.append(ModelInfo(name, backed, missing))
    kinds: dict[str, set[bool]] = {}
    for m in models:
        kinds.setdefault(m.model_name, set()).add(m.supermemory_backed)
    for name, seen in kinds.items():
        if len(seen) > 1:
            index = next(i for i, item in enumerate(raw) if isinstance(item, dict) and item.get("model_name") == name)
            c.fail(("model_list", index, "model_name"),
                   f"model group {name!r} mixes Supermemory-backed and ordinary deployments; memory headers "
                   "are forwarded per group, so give them different model_name values")
    for m in models:
        if m.missing_env:
            c.warnings.append(f"model {m.model_name!r} is disabled: environment variable(s) "
                              f"{', '.join(m.missing_env)} not set")
    return models


MAPPING_SECTIONS = ("general_settings", "litellm_settings", "router_settings", "callback_settings",
                    "environment_variables")


def check_litellm_settings(c: Checker, raw: dict, models: list[ModelInfo]) -> None:
    """``general_settings`` and ``litellm_settings``: nothing there may forward the memory headers
    to an ordinary model; LiteLLM's master key is ours to set."""
    for section in MAPPING_SECTIONS:  # LiteLLM reads each with .get()/.items(): a list there breaks it
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            c.fail((section,), f"must be a mapping, got {type(raw[section]).__name__}")
    general = raw.get("general_settings")
    if general is not None and not isinstance(general, dict):
        return
    general = general or {}
    if general.get("forward_client_headers_to_llm_api"):
        c.fail(("general_settings", "forward_client_headers_to_llm_api"),
               "would forward the memory headers to every model; the memory proxy turns forwarding on for "
               "the Supermemory-backed model groups itself (remove this key)")
    if "master_key" in general:
        c.warnings.append("general_settings.master_key is ignored: the LiteLLM master key comes from "
                          "LITELLM_MASTER_KEY or is generated once into the state folder")
    litellm_settings = raw.get("litellm_settings")
    if litellm_settings is not None and not isinstance(litellm_settings, dict):
        return
    group_settings = (litellm_settings or {}).get("model_group_settings") or {}
    listed = group_settings.get("forward_client_headers_to_llm_api") if isinstance(group_settings, dict) else None
    backed = {m.model_name for m in models if m.supermemory_backed}
    for i, group in enumerate(listed or []):
        if group not in backed:
            c.fail(("litellm_settings", "model_group_settings", "forward_client_headers_to_llm_api", i),
                   f"{group!r} is not Supermemory-backed: forwarding client headers to it would hand it the "
                   "memory headers (the memory proxy lists the Supermemory-backed groups itself)")


FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def check_fallbacks(c: Checker, raw: dict, models: list[ModelInfo]) -> None:
    """No fallback from a Supermemory-backed group to an ordinary one, in ``router_settings`` or
    ``litellm_settings``: LiteLLM makes the fallback call with the same forwarded headers, so
    the ordinary model's provider would get the memory headers. A fallback for every group
    (``"*"``, ``default_fallbacks``) to an ordinary one is a warning: it applies to the
    Supermemory-backed groups as well."""
    backed = {m.model_name for m in models if m.supermemory_backed}
    if not backed:
        return

    def ordinary(targets: Any) -> list:
        """The targets that are not Supermemory-backed groups (anything but a group name is not one)."""
        listed = targets if isinstance(targets, list) else [targets]
        return [t for t in listed if not (isinstance(t, str) and t in backed)]

    for section in ("router_settings", "litellm_settings"):
        settings = raw.get(section)
        if not isinstance(settings, dict):
            continue
        for key in FALLBACK_KEYS:
            for i, entry in enumerate(settings.get(key) if isinstance(settings.get(key), list) else []):
                for group, targets in (entry.items() if isinstance(entry, dict) else ()):
                    if group in backed:
                        for target in ordinary(targets):
                            c.fail((section, key, i, group), f"falls back from the Supermemory-backed {group!r} "
                                   f"to {target!r}, which is not: LiteLLM would send it the memory headers")
                    elif group == "*" and ordinary(targets):
                        c.warnings.append(f"{section}.{key}: the fallback for every group "
                                          f"({', '.join(map(str, ordinary(targets)))}) also serves the "
                                          "Supermemory-backed ones, and would get their memory headers")
        defaults = settings.get("default_fallbacks")
        ordinary_defaults = ordinary(defaults) if isinstance(defaults, list) else []
        if ordinary_defaults:
            c.warnings.append(f"{section}.default_fallbacks ({', '.join(map(str, ordinary_defaults))}) also serve the "
                              "Supermemory-backed groups, and would get their memory headers")
