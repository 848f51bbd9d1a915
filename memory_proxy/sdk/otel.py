"""SDK mode: LiteLLM's OpenTelemetry-based loggers in-process (``otel``, ``langfuse_otel``).

Binary mode's launcher switches on LiteLLM's ``otel`` callback whenever tracing is on
(``tracing.litellm_setup``). Here the same LiteLLM logger class runs in this process, with the
settings the launcher gives the binary: the proxy's collector, service ``litellm``, message
content off unless ``memory_proxy.otel.capture_message_content``. It replaces an ``otel`` the
user listed (as the launcher's environment decides for the binary's) or is added. A
``langfuse_otel`` the user listed is built here too, as LiteLLM builds it (its keys and host
from the environment), so that both are in-process loggers of the same kind.

What differs from LiteLLM building them, forced by its code (1.108):

- neither registers itself with LiteLLM's proxy server: that imports
  ``litellm.proxy.proxy_server`` (about 9 s and a FastAPI app on a small machine, at startup)
  for spans of a proxy server SDK mode does not run (``Received Proxy Server Request``, its
  database and cache calls);
- ``otel`` exports through ``Tracing.litellm_provider`` (its own batch processor and exporter,
  counted and logged like the proxy's, shut down with them) instead of setting OpenTelemetry's
  global tracer provider;
- LiteLLM's spans are parented on the proxy's server span, handed to each call as the LiteLLM
  proxy hands it the incoming ``traceparent`` (``proxy_server_request.headers``: ``call_context``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory_proxy.sdk.callbacks import CALLBACK_KEYS

if TYPE_CHECKING:
    from memory_proxy.server.tracing import Tracing

OTEL, LANGFUSE_OTEL = "otel", "langfuse_otel"


def _in_process(cls: type) -> type:
    """``cls`` without its registration with LiteLLM's proxy server (see the docstring)."""

    class InProcess(cls):
        def _init_otel_logger_on_litellm_proxy(self) -> None:
            pass

    InProcess.__name__ = InProcess.__qualname__ = cls.__name__
    return InProcess


def otel_logger(tracing: Tracing) -> Any:
    """LiteLLM's ``OpenTelemetry`` logger exporting to the proxy's collector."""
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig

    from memory_proxy.server.tracing import LITELLM_SERVICE

    found = tracing.settings
    config = OpenTelemetryConfig(exporter="otlp_http", endpoint=found.traces_endpoint, service_name=LITELLM_SERVICE,
                                 model_id=LITELLM_SERVICE, capture_message_content=found.capture_mode)
    return _in_process(OpenTelemetry)(config=config, callback_name=OTEL, tracer_provider=tracing.litellm_provider())


def langfuse_logger() -> Any:
    """LiteLLM's ``langfuse_otel`` logger, as LiteLLM makes it (``LANGFUSE_*`` from the environment)."""
    from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger

    return _in_process(LangfuseOtelLogger)(config=None, callback_name=LANGFUSE_OTEL)


def install(litellm: Any, tracing: Tracing | None) -> None:
    """Build the loggers above in place of their names in the callback lists (the caller
    restores the lists at shutdown, as for every callback); with tracing on, ``otel`` is
    added after the other callbacks when not listed."""
    made: dict[str, Any] = {}
    if tracing is not None:
        made[OTEL] = otel_logger(tracing)
    if any(LANGFUSE_OTEL in getattr(litellm, name) for name in CALLBACK_KEYS):
        made[LANGFUSE_OTEL] = langfuse_logger()
    for name in CALLBACK_KEYS:
        listed = getattr(litellm, name)
        if any(isinstance(entry, str) and entry in made for entry in listed):
            setattr(litellm, name, [made.get(entry, entry) if isinstance(entry, str) else entry for entry in listed])
    if OTEL in made and made[OTEL] not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(made[OTEL])


def call_context(traceparent: str) -> dict:
    """A call's argument that makes LiteLLM's spans children of the proxy's server span."""
    return {"proxy_server_request": {"headers": {"traceparent": traceparent}}}
