"""OpenTelemetry traces of the memory proxy, when configured (docs/observability.md).

One ``Tracing`` per app, made in the lifespan like the HTTP sessions (no global tracer
provider): a server span per relayed request, its ``traceparent`` sent on to LiteLLM (whose
``otel`` callback keeps it, so LiteLLM's spans join the trace), and a client span for the
Supermemory hop in the egress. LiteLLM does not pass ``traceparent`` on to the provider, so
the ingress also hands the egress its span context in ``TRACE_HEADER`` (a memory header:
dropped from clients at the ingress and before Supermemory at the egress) and the egress span
is a child of the proxy's server span. Spans leave through a ``BatchSpanProcessor`` (its own
thread): exporting never blocks or fails a request; a failing collector is logged once and
counted. With tracing off, ``runtime.tracing`` is None and the request path does nothing more.

Attributes follow OpenTelemetry's semantic conventions **1.37.0** (``SCHEMA_URL``): HTTP
server/client attributes and, for model calls, the GenAI attributes of that version
(``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens`` when known). Prompt and answer text are never put in the proxy's spans.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memory_proxy.config.model import Config
    from memory_proxy.server.outcome import Outcome

log = logging.getLogger("memory_proxy")

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
DEFAULT_SERVICE = "litellm-memory-proxy"
LITELLM_SERVICE = "litellm"
TRACE_HEADER = "x-supermemory-traceparent"  # ingress -> LiteLLM -> egress (backed groups only)
# GenAI operation names (semconv 1.37.0) by route shape.
OPERATIONS = {"chat/completions": "chat", "messages": "chat", "responses": "chat", "completions": "text_completion",
              "embeddings": "embeddings"}


@dataclass(frozen=True)
class OtelSettings:
    traces_endpoint: str
    service_name: str
    capture_message_content: bool


def settings(config: Config, environ: Mapping[str, str] | None = None) -> OtelSettings | None:
    """Tracing's settings, or None when it is off: on when ``memory_proxy.otel.endpoint``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (in that
    order), unless ``memory_proxy.otel.enabled: false`` or ``OTEL_SDK_DISABLED=true``."""
    environ = os.environ if environ is None else environ
    otel = config.proxy.otel
    if not otel.enabled or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if otel.endpoint:
        endpoint = otel.endpoint.rstrip("/")
        traces = endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        traces = environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        traces = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    else:
        return None
    service = otel.service_name or environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
    return OtelSettings(traces, service, otel.capture_message_content)


def litellm_setup(generated: dict, config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """Binary mode: switch on LiteLLM's ``otel`` callback in the generated config (unless listed
    already) and return the environment LiteLLM needs to export to the same collector, with
    message content off unless ``memory_proxy.otel.capture_message_content``. Nothing when off."""
    found = settings(config, environ)
    if found is None:
        return {}
    litellm_settings = generated.setdefault("litellm_settings", {}) or {}
    generated["litellm_settings"] = litellm_settings
    callbacks = litellm_settings.get("callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, str) else list(callbacks)
    if "otel" not in callbacks:
        litellm_settings["callbacks"] = callbacks + ["otel"]
    env = {"OTEL_EXPORTER": "otlp_http", "OTEL_ENDPOINT": found.traces_endpoint,
           "OTEL_SERVICE_NAME": LITELLM_SERVICE,
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true" if found.capture_message_content else "false"}
    # LiteLLM prefers these to OTEL_ENDPOINT/OTEL_EXPORTER: point them at the same collector.
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = found.traces_endpoint
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    return env


class _CountingExporter:
    """The OTLP exporter, counting failed exports and logging the first one only."""

    def __init__(self, exporter) -> None:
        self.exporter = exporter
        self.failures = 0

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.exporter.export(spans)
        except Exception as exc:
            result, reason = SpanExportResult.FAILURE, type(exc).__name__
        else:
            reason = "the collector refused or did not answer"
        if result is not SpanExportResult.SUCCESS:
            self.failures += 1
            if self.failures == 1:
                log.warning("could not export traces to %s (%s); counting further failures in "
                            "memory_proxy_trace_export_failures_total", self.exporter._endpoint, reason)
        return result

    def shutdown(self):
        return self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class Tracing:
    def __init__(self, found: OtelSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.settings = found
        # The exporter's own retries log a warning each; ours logs the first failure.
        logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.CRITICAL)
        # The exporter's default (10 s, retrying) only delays a shutdown with a dead collector; the
        # standard variables still win.
        timeout = None if {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} & set(os.environ) else 5.0
        self.exporter = _CountingExporter(OTLPSpanExporter(endpoint=found.traces_endpoint, timeout=timeout))
        self.provider = TracerProvider(resource=Resource.create({"service.name": found.service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("memory_proxy", schema_url=SCHEMA_URL)
        self.propagator = TraceContextTextMapPropagator()
        self._kinds = SpanKind
        self._error = Status(StatusCode.ERROR)  # opentelemetry is imported only when tracing is on

    def shutdown(self) -> None:
        self.provider.shutdown()

    # --- the ingress ---------------------------------------------------------------------

    def start_request(self, method: str, path: str, headers, model: str | None):
        """The server span of a request (parented on a ``traceparent`` the client sent)."""
        from memory_proxy.server.metrics import route_shape

        carrier = {n: headers[n] for n in ("traceparent", "tracestate") if n in headers}
        parent = self.propagator.extract(carrier) if carrier else None
        route = route_shape(path)
        attributes = {"http.request.method": method, "url.path": path, "http.route": route}
        if (operation := OPERATIONS.get(route)) is not None:
            attributes["gen_ai.operation.name"] = operation
        if model is not None:
            attributes["gen_ai.request.model"] = model
        return self.tracer.start_span(f"{method} {route}", context=parent, kind=self._kinds.SERVER,
                                      attributes=attributes)

    def traceparent(self, span) -> str:
        """``span``'s W3C ``traceparent`` value."""
        context = span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def end_request(self, span, outcome: Outcome) -> None:
        span.set_attributes({
            "http.response.status_code": outcome.status, "memory_proxy.request_id": outcome.request_id,
            "memory_proxy.client_id": outcome.client_id, "memory_proxy.client_id_source": outcome.resolved_by,
            "memory_proxy.backend": outcome.backend, "memory_proxy.streamed": outcome.streamed,
            "memory_proxy.completed": outcome.completed})
        if outcome.first_event_s is not None:
            span.set_attribute("memory_proxy.time_to_first_event_s", outcome.first_event_s)
        if outcome.failed:
            if outcome.error is not None or outcome.status >= 500:
                span.set_attribute("error.type", outcome.error or str(outcome.status))
            span.set_status(self._error)
        span.end()

    # --- the egress ----------------------------------------------------------------------

    def start_egress(self, headers, method: str, url) -> object:
        """The client span of the Supermemory hop, parented on the ingress's span."""
        value = headers.get(TRACE_HEADER)
        parent = self.propagator.extract({"traceparent": value}) if value else None
        return self.tracer.start_span(f"{method} supermemory", context=parent, kind=self._kinds.CLIENT,
                                      attributes={"http.request.method": method, "server.address": url.host,
                                                  "server.port": url.port or (443 if url.scheme == "https" else 80)})

    def end_egress(self, span, status: int, *, client_id: str, supermemory_error: str | None = None,
                   cloudflare_retried: bool = False, error: str | None = None) -> None:
        span.set_attributes({"http.response.status_code": status, "memory_proxy.client_id": client_id,
                             "supermemory.cloudflare_retried": cloudflare_retried,
                             "supermemory.memory_added": supermemory_error is None})
        if supermemory_error is not None:
            span.set_attribute("supermemory.error", supermemory_error[:200])
        if error is not None or status >= 500:
            span.set_attribute("error.type", error or str(status))
            span.set_status(self._error)
        span.end()
