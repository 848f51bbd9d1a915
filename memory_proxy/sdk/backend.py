"""LiteLLM in-process: its module-global settings, the Router, the in-process callbacks and warm-up.

SDK mode's design and what LiteLLM's code forces on it: docs/sdk-mode.md."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memory_proxy.config import warmup
from memory_proxy.config.litellm import build_litellm_config
from memory_proxy.config.model import Config, resolve_env
from memory_proxy.sdk import callbacks as litellm_callbacks
from memory_proxy.sdk import otel
from memory_proxy.server import headers as h
from memory_proxy.server.runtime import Runtime

log = logging.getLogger("memory_proxy")



_UNSET = object()
# What the LiteLLM proxy never takes from ``environment_variables`` (``ProxyConfig._BLOCKED_ENV_KEYS``, 1.108).
BLOCKED_ENV_KEYS = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES",
                              "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "HOME", "USER", "SHELL", "LOGNAME",
                              "NO_PROXY", "no_proxy"})


def _litellm():
    """Import LiteLLM, never fetching its price map (the only outside connection at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def load_litellm() -> None:
    """Import LiteLLM and the parts of its proxy package SDK mode calls (about 8 s and 200 MB
    on a small machine). ``create_sdk_app`` does it, so the app's startup only builds the Router."""
    _litellm()
    import litellm.anthropic_interface.exceptions
    import litellm.proxy.anthropic_endpoints.streaming_model_restamp
    import litellm.proxy.auth.auth_utils
    import litellm.proxy.common_request_processing
    import litellm.proxy.route_llm_request
    import litellm.proxy.utils  # noqa: F401


def connect_host(host: str) -> str:
    """Where this process reaches its own listening socket (for the egress URL)."""
    if host in ("", "0.0.0.0", "::", "[::]", "localhost"):
        return "127.0.0.1"
    return host


@dataclass
class SdkSettings:
    """What the Router is built from: the generated LiteLLM config, resolved."""

    model_list: list[dict]
    litellm_settings: dict
    router_settings: dict
    general_settings: dict
    backed_groups: frozenset[str]
    callback_settings: dict = field(default_factory=dict)  # the top-level section, for named generic_api sinks
    environment: dict[str, str] = field(default_factory=dict)  # environment_variables, resolved


def sdk_settings(config: Config, egress_url: str, egress_secret: str,
                 environ: Mapping[str, str] | None = None) -> SdkSettings:
    """The generated config binary mode hands LiteLLM, with ``os.environ/`` resolved."""
    environ = os.environ if environ is None else environ
    generated = build_litellm_config(config, egress_url, environ, usage_callback=False, warmup_answers=False)
    model_list = []
    for listed in generated.get("model_list") or []:
        model = dict(listed)
        params = dict(model["litellm_params"])
        extra = params.get("extra_headers")
        if isinstance(extra, dict) and h.EGRESS_SECRET_HEADER in extra:
            params["extra_headers"] = {**extra, h.EGRESS_SECRET_HEADER: egress_secret}
        model["litellm_params"] = resolve_env(params, environ)
        model_list.append(model)
    settings = dict(resolve_env(generated.get("litellm_settings") or {}, environ))
    settings.pop("model_group_settings", None)  # header forwarding is done per call here
    general = dict(resolve_env(generated.get("general_settings") or {}, environ))
    general.pop("master_key", None)
    environment = {str(k): str(v) for k, v in resolve_env(generated.get("environment_variables") or {}, environ).items()
                   if v is not None and str(k) not in BLOCKED_ENV_KEYS}
    return SdkSettings(model_list, settings, dict(resolve_env(generated.get("router_settings") or {}, environ)),
                       general, frozenset(config.supermemory_groups),
                       dict(resolve_env(generated.get("callback_settings") or {}, environ)), environment)


@dataclass
class SdkBackend:
    """The in-process LiteLLM of one running app (created in its lifespan)."""

    router: Any
    settings: SdkSettings
    version: str
    started_s: float
    restore: dict[str, object] = field(default_factory=dict)
    restore_callbacks: dict[str, object] = field(default_factory=dict)
    restore_environ: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def start(cls, settings: SdkSettings, runtime: Runtime) -> SdkBackend:
        started = time.perf_counter()
        litellm = _litellm()
        from litellm import Router

        restore: dict[str, object] = {}

        def set_global(name: str, value: object) -> None:
            restore.setdefault(name, getattr(litellm, name, _UNSET))
            setattr(litellm, name, value)

        # environment_variables, as the LiteLLM proxy sets them (its integrations read os.environ:
        # LANGFUSE_*, GENERIC_LOGGER_*, ...); put back at shutdown.
        restore_environ = {name: os.environ.get(name) for name in settings.environment}
        restore_callbacks: dict[str, object] = {}
        os.environ.update(settings.environment)
        try:
            set_global("aclient_session", runtime.litellm)
            set_global("suppress_debug_info", True)
            # LiteLLM's report of each call (tokens, cost), in-process: binary mode's usage callback
            set_global("callbacks", [*litellm.callbacks, _report_logger(runtime)])
            for name, value in settings.litellm_settings.items():
                if name in litellm_callbacks.CALLBACK_KEYS:
                    continue  # installed below, as the LiteLLM proxy installs them
                if name.endswith("callbacks") or name in ("cache", "cache_params"):
                    log.warning("SDK mode ignores litellm_settings.%s", name)
                    continue
                set_global(name, value)
            _flush_client_cache(litellm)
            restore_callbacks = litellm_callbacks.install(litellm, settings.litellm_settings,
                                                          settings.callback_settings, runtime.config.path)
            # LiteLLM's OpenTelemetry loggers in-process; with tracing on, its spans in the proxy's
            # trace as the launcher arranges for the binary
            otel.install(litellm, runtime.tracing)
            litellm_callbacks.build(litellm)
            accepted = set(inspect.signature(Router.__init__).parameters)
            router_kwargs = {k: v for k, v in settings.router_settings.items() if k in accepted}
            for name in set(settings.router_settings) - accepted:
                log.warning("SDK mode ignores router_settings.%s (not a Router argument)", name)
            router = Router(model_list=settings.model_list, **router_kwargs)
        except Exception:
            _put_back(litellm, restore, restore_callbacks, restore_environ)
            raise
        try:
            from importlib.metadata import version
            litellm_version = version("litellm")
        except Exception:
            litellm_version = "unknown"
        return cls(router, settings, litellm_version, time.perf_counter() - started, restore, restore_callbacks,
                   restore_environ)

    async def stop(self) -> None:
        litellm = _litellm()
        try:
            from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
            await close_litellm_async_clients()
        except Exception as exc:
            log.debug("closing LiteLLM's cached clients: %s", exc)
        _flush_client_cache(litellm)
        _put_back(litellm, self.restore, self.restore_callbacks, self.restore_environ)

    # --- what a request needs ----------------------------------------------------------

    def group_of(self, model: object) -> str | None:
        """The model group a requested name routes to (aliases resolved), if any."""
        if not isinstance(model, str):
            return None
        if model in self.router.model_names:
            return model
        alias = (self.router.model_group_alias or {}).get(model)
        target = alias.get("model") if isinstance(alias, dict) else alias
        return target if isinstance(target, str) and target in self.router.model_names else None

    def route_kwargs(self, route_type: str, data: dict) -> dict:
        """The model check of LiteLLM's proxy (route_llm_request): known groups and aliases,
        wildcard routes, then deployment names; anything else is a 400."""
        from litellm.proxy.route_llm_request import ROUTE_ENDPOINT_MAPPING, ProxyModelNotFoundError

        model = data.get("model")
        router = self.router
        if isinstance(model, str):
            if model in router.model_names or router.is_recognized_model(model):
                return {}
            if router.default_deployment is not None or len(router.pattern_router.patterns) > 0:
                return {}
            if model in router.deployment_names:
                return {"specific_deployment": True}
        raise ProxyModelNotFoundError(route=ROUTE_ENDPOINT_MAPPING.get(route_type, route_type), model_name=model)

    def model_listing(self) -> dict:
        """``/v1/models`` in OpenAI's shape, built the way the LiteLLM proxy builds it."""
        from litellm.proxy.utils import create_model_info_response

        data = []
        for name in self.router.get_model_names():
            if warmup.is_warmup(name):  # hidden, as the binary mode's front door hides them
                continue
            info = create_model_info_response(model_id=name, provider="openai", llm_router=self.router)
            info["id"] = name
            data.append(dict(info))
        return {"data": data, "object": "list"}


def _put_back(litellm, restore: dict[str, object], restore_callbacks: dict[str, object],
              restore_environ: dict[str, str | None]) -> None:
    """LiteLLM's globals, its callback lists and the environment as they were before ``start``."""
    litellm_callbacks.restore(litellm, restore_callbacks)
    for name, value in restore_environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for name, value in restore.items():
        if value is _UNSET:
            with contextlib.suppress(AttributeError):
                delattr(litellm, name)
        else:
            setattr(litellm, name, value)


def _flush_client_cache(litellm) -> None:
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    if cache is not None:
        with contextlib.suppress(Exception):
            cache.flush_cache()


def _report_logger(runtime: Runtime) -> Any:
    """A LiteLLM callback handing each call's standard logging payload to
    ``Runtime.litellm_report`` (what binary mode's usage callback posts to
    ``usage_intake``)."""
    from litellm.integrations.custom_logger import CustomLogger

    class ReportLogger(CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            # LiteLLM keeps one logger per class name and public attributes: this one is this app's
            self.app_id = os.urandom(8).hex()

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            runtime.litellm_report(kwargs.get("standard_logging_object"))

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
            runtime.litellm_report(kwargs.get("standard_logging_object"))

    return ReportLogger()


async def warm_up(sdk: SdkBackend) -> list[warmup.Warmed]:
    """The binary mode's warm-up (``warmup.py``) in-process: every API shape through the Router
    on the hidden warm-up groups, which LiteLLM answers itself (no provider is called)."""
    started = time.monotonic()
    groups = [m["model_name"] for m in sdk.settings.model_list if warmup.is_warmup(m.get("model_name"))]

    async def one(group: str, path: str, stream: bool, body: dict) -> warmup.Warmed:
        began = time.monotonic()
        route = "anthropic_messages" if path == "/v1/messages" else "acompletion"
        status, error = 200, ""
        try:
            result = await getattr(sdk.router, route)(**body)
            if hasattr(result, "__aiter__"):
                async for _ in result:
                    pass
        except Exception as exc:
            status, error = None, type(exc).__name__
        return warmup.Warmed(group, path, stream, status, (time.monotonic() - began) * 1000, error)

    outcomes = list(await asyncio.gather(*(one(*r) for r in warmup.requests(groups))))
    log.info("SDK mode: %s", warmup.summary(outcomes, time.monotonic() - started))
    return outcomes
