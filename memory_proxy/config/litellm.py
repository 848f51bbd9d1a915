"""Turn the user's config into the config the real LiteLLM binary is started with.

The generated file holds no secret: the master key and the egress secret are
``os.environ/NAME`` references that the launcher sets in LiteLLM's environment.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping

import yaml

from memory_proxy.config import warmup
from memory_proxy.config.env import resolve_env
from memory_proxy.config.fields import OUR_SECTIONS
from memory_proxy.config.litellm_checks import is_supermemory_backed
from memory_proxy.config.model import Config
from memory_proxy.config.secrets import mask_secrets as mask_secrets  # `check` masks the generated config
from memory_proxy.names import EGRESS_SECRET_ENV, MASTER_KEY_ENV, USAGE_URL_ENV
from memory_proxy.server.headers import EGRESS_SECRET_HEADER

EGRESS_PREFIX = "/_egress"  # where the memory proxy serves the egress (memory_proxy/server/egress.py)
USAGE_CALLBACK_PATH = "/_usage/litellm"  # where LiteLLM's usage callback posts (server/usage_intake.py)
USAGE_CALLBACK = "memory_proxy.usage.litellm_callback.handler"  # a custom callback, LiteLLM loads it by path


def egress_base(port: int, host: str = "127.0.0.1") -> str:
    """The egress address the generated config sends Supermemory-backed models to."""
    return f"http://{host}:{port}{EGRESS_PREFIX}"


def usage_callback_env(port: int, host: str) -> dict[str, str]:
    """LiteLLM's environment for the usage callback (``usage/litellm_callback.py``): our
    loopback intake (the per-run secret is ``EGRESS_SECRET_ENV``, set by the launcher anyway;
    the generated file never holds it). LiteLLM's batch loggers flush every second instead of
    every five, so a record is complete soon after its answer."""
    return {USAGE_URL_ENV: f"http://{host}:{port}{USAGE_CALLBACK_PATH}", "DEFAULT_FLUSH_INTERVAL_SECONDS": "1"}


def _with_usage_callback(settings: dict) -> dict:
    """The usage callback added to ``litellm_settings.callbacks``, after the user's own (which
    keep working: it is a logger of its own class, see ``usage/litellm_callback.py``). In
    ``callbacks`` LiteLLM runs a logger for successes and failures, sync and async calls alike;
    in ``success_callback`` it would not run it for async calls."""
    listed = settings.get("callbacks")
    listed = [listed] if isinstance(listed, str) else list(listed or [])
    if USAGE_CALLBACK not in listed:
        listed.append(USAGE_CALLBACK)
    settings["callbacks"] = listed
    return settings


def build_litellm_config(config: Config, egress_url: str, environ: Mapping[str, str] | None = None, *,
                         usage_callback: bool = True, warmup_answers: bool = True) -> dict:
    """Our sections removed, Supermemory-backed models sent through the egress with the
    per-run secret, header forwarding on for exactly those groups, model-info polling off,
    the hidden warm-up groups (``warmup.py``) added, and LiteLLM's usage figures sent to our
    intake (unless ``memory_proxy.usage.enabled`` is false). ``warmup_answers``: the warm-up
    groups of the OpenAI and Anthropic families call the memory proxy's canned answers beside
    the egress (SDK mode warms before it listens: mock answers only)."""
    environ = os.environ if environ is None else environ
    raw = copy.deepcopy(config.raw)
    for section in OUR_SECTIONS:
        raw.pop(section, None)
    general = raw.get("general_settings") or {}
    general.pop("master_key", None)
    general["master_key"] = f"os.environ/{MASTER_KEY_ENV}"
    general["disable_model_info_refresh"] = True
    raw["general_settings"] = general

    supermemory_base = config.proxy.supermemory.base_url
    # A model whose key variable is unset is left out (status/check say so) rather than failing per call.
    raw["model_list"] = [m for m, info in zip(raw.get("model_list") or [], config.models, strict=False)
                         if not info.missing_env]
    for model in raw["model_list"]:
        params = model["litellm_params"]
        api_base = resolve_env(params.get("api_base"), environ)
        if not is_supermemory_backed(api_base, supermemory_base):
            continue
        params["api_base"] = egress_url + api_base[len(supermemory_base):]
        extra = dict(params.get("extra_headers") or {})
        extra[EGRESS_SECRET_HEADER] = f"os.environ/{EGRESS_SECRET_ENV}"
        params["extra_headers"] = extra

    answers = egress_url.removesuffix(EGRESS_PREFIX) + warmup.ANSWERS_PREFIX if warmup_answers else None
    raw["model_list"] += warmup.deployments(config, answers)

    groups = sorted({m.model_name for m in config.models if m.supermemory_backed and not m.missing_env})
    if groups:
        settings = raw.get("litellm_settings") or {}
        group_settings = settings.get("model_group_settings") or {}
        group_settings["forward_client_headers_to_llm_api"] = groups
        settings["model_group_settings"] = group_settings
        raw["litellm_settings"] = settings
    if usage_callback and config.proxy.usage.enabled:  # (SDK mode has its own, in-process)
        raw["litellm_settings"] = _with_usage_callback(raw.get("litellm_settings") or {})
    return raw


def render(generated: dict, source: str | os.PathLike[str]) -> str:
    """The generated config as YAML, headed by the file it comes from (``--config``'s)."""
    header = f"# Generated by start_proxies.py from {source} on every start; edit that file instead.\n"
    return header + yaml.safe_dump(generated, sort_keys=False, default_flow_style=False)
