"""SDK mode: the ``litellm_settings`` callbacks installed on the ``litellm`` module as the
LiteLLM proxy installs them from its config (``proxy_server.load_config``, 1.108).

- ``callbacks``: LiteLLM's own integrations by name (``otel``, ``generic_api``,
  ``langfuse_otel``, ``prometheus``, ...) stay names, which LiteLLM turns into loggers on the
  first call; a name declared in ``callback_settings`` with ``callback_type: generic_api``
  becomes that logger; anything else is a ``module.instance`` path (``custom_callbacks.handler``)
  loaded from beside the user's config file, as the proxy loads it beside its own.
- ``success_callback`` / ``failure_callback``: names (``langfuse``, ...) or dotted paths,
  through LiteLLM's ``logging_callback_manager`` (which sends async functions to its async lists).

The LiteLLM proxy's guardrail-style entries of ``callbacks`` (``presidio``, ``hide_secrets``,
...) are proxy hooks, not logging callbacks: SDK mode has no proxy hooks, so they are refused
by name at startup rather than silently dropped. Everything is undone by ``restore``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("memory_proxy")

CALLBACK_KEYS = ("callbacks", "success_callback", "failure_callback")
# The module lists every install touches (copied first, put back at shutdown).
CALLBACK_LISTS = ("callbacks", "success_callback", "failure_callback", "_async_success_callback",
                  "_async_failure_callback")


class CallbackError(ValueError):
    """A callback SDK mode cannot run (named in the message)."""


def _as_list(value: Any, key: str) -> list:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise CallbackError(f"litellm_settings.{key} must be a list of callback names, got {type(value).__name__}")
    return value


def install(litellm: Any, settings: dict, callback_settings: dict, config_path: Path) -> dict[str, object]:
    """Install the callbacks of ``settings`` (``litellm_settings``); returns what ``restore`` puts back."""
    from litellm.litellm_core_utils.logging_callback_manager import LoggingCallbackManager
    from litellm.proxy.types_utils.utils import get_instance_fn

    saved: dict[str, object] = {name: list(getattr(litellm, name, [])) for name in CALLBACK_LISTS}
    saved["callback_settings"] = getattr(litellm, "callback_settings", {})
    if not any(key in settings for key in CALLBACK_KEYS):
        return saved
    if callback_settings:
        litellm.callback_settings = callback_settings
    manager = litellm.logging_callback_manager
    known = set(litellm._known_custom_logger_compatible_callbacks)

    def load(entry: Any) -> Any:
        if not isinstance(entry, str):
            raise CallbackError(f"callback {entry!r} is not a name")
        if "." not in entry:
            raise CallbackError(f"callback {entry!r} is a LiteLLM proxy hook, not a logging callback; "
                                "SDK mode runs none of those (binary mode does)")
        try:
            return get_instance_fn(value=entry, config_file_path=str(config_path))
        except Exception as exc:
            raise CallbackError(f"callback {entry!r} could not be loaded: {exc}") from None

    try:
        if "callbacks" in settings:
            for listed in _as_list(settings["callbacks"], "callbacks"):
                entry = listed
                if isinstance(entry, str):
                    entry = LoggingCallbackManager.add_custom_callback_generic_api_str(entry)
                if isinstance(entry, str) and entry not in known:
                    entry = load(entry)
                manager.add_litellm_callback(entry)
        for key, add in (("success_callback", manager.add_litellm_success_callback),
                         ("failure_callback", manager.add_litellm_failure_callback)):
            if key in settings:
                getattr(litellm, key).clear()  # the proxy starts these lists afresh too
                for entry in _as_list(settings[key], key):
                    add(load(entry) if isinstance(entry, str) and "." in entry else entry)
    except Exception:
        restore(litellm, saved)
        raise
    log.info("SDK mode: LiteLLM callbacks %s, success %s, failure %s", _names(litellm.callbacks),
             _names(litellm.success_callback + litellm._async_success_callback),
             _names(litellm.failure_callback + litellm._async_failure_callback))
    return saved


def restore(litellm: Any, saved: dict[str, object]) -> None:
    for name, value in saved.items():
        setattr(litellm, name, value)


def _names(entries: list) -> list[str]:
    return [e if isinstance(e, str) else type(e).__name__ for e in entries]
