"""``GET /metrics``: the memory proxy's Prometheus metrics (text exposition format).

A registry per app, created with the ``Runtime`` in the lifespan (never prometheus_client's
global one). Per request: a few counter increments and one or two histogram observations,
on label children kept in a dict. Labels stay low-cardinality: client ids beyond
``MAX_CLIENTS`` become ``other``, models outside the config's model groups ``other``
(``none`` without one), routes their shape (``chat/completions``, ``models``, ...), statuses
their class. Figures the proxy does not own (held requests, LiteLLM restarts, the usage
store's queue and drops) come from ``inputs``: functions set by whatever knows them; a
metric whose input is unset is not exported. Front-door refusals are counted by the front door
itself (``FrontDoor.refused``, one reason each). The list is in docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from memory_proxy.server.errors import error_response

if TYPE_CHECKING:
    from memory_proxy.server.outcome import Outcome
    from memory_proxy.server.runtime import Runtime

MAX_CLIENTS = 100
OTHER = "other"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FIRST_EVENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_LABELS = ("client", "model", "route", "status_class")
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")  # as the usage record counts them
# Input name -> (metric name, help, kind). Kind "counter" adds the _total suffix.
INPUTS = {
    "held_requests": ("memory_proxy_held_requests", "Requests held while LiteLLM restarts", "gauge"),
    "litellm_restarts": ("memory_proxy_litellm_restarts", "Restarts of LiteLLM by the launcher", "counter"),
    "usage_queue": ("memory_proxy_usage_queue_depth", "Usage records not yet in the usage store (queued, or held "
                    "while it fails)", "gauge"),
    "usage_dropped": ("memory_proxy_usage_dropped", "Usage records dropped (queue full or store failing)",
                      "counter"),
}


def route_shape(path: str) -> str:
    """A model route's path as a label: ``/v1/chat/completions`` -> ``chat/completions``,
    ``/v1/models/openai/gpt-4o`` -> ``models``, ``/v1/responses/<id>/cancel`` -> ``responses``."""
    rest = (path[3:] if path.startswith("/v1/") else path).strip("/")
    head = rest.split("/", 1)[0]
    return head if head in ("models", "responses") else rest


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.groups = frozenset(m.model_name for m in runtime.config.models)
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("memory_proxy_requests", "Requests relayed (or answered for a failed upstream)",
                                REQUEST_LABELS, registry=registry)
        self.errors = Counter("memory_proxy_request_errors",
                              "Requests that failed: status >= 400, or the answer cut short", REQUEST_LABELS,
                              registry=registry)
        self.duration = Histogram("memory_proxy_request_duration_seconds",
                                  "From the request's arrival to the answer's end", ("model", "route"),
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self.first_event = Histogram("memory_proxy_time_to_first_event_seconds",
                                     "Event streams: from the request's arrival to the first answer byte",
                                     ("model", "route"), buckets=FIRST_EVENT_BUCKETS, registry=registry)
        self.tokens = Counter("memory_proxy_tokens",
                              "Tokens by kind (input, output, cache_read, cache_write), when LiteLLM reports them",
                              ("client", "model", "kind"), registry=registry)
        self.cost = Counter("memory_proxy_cost_usd", "Cost in USD as LiteLLM prices it, when known",
                            ("client", "model"), registry=registry)
        self.inputs: dict[str, Callable[[], float]] = {}
        self.litellm = (0.0, 0.0)  # (up, ready) as last probed, at the last scrape
        registry.register(_RuntimeCollector(self))
        self._clients: set[str] = set()
        self._children: dict[tuple, tuple] = {}

    def _client(self, client_id: str) -> str:
        if client_id in self._clients:
            return client_id
        if len(self._clients) < MAX_CLIENTS:
            self._clients.add(client_id)
            return client_id
        return OTHER

    def _model(self, model: str | None) -> str:
        if model is None:
            return "none"
        return model if model in self.groups else OTHER

    def observe(self, outcome: Outcome) -> None:
        key = (outcome.client_id, outcome.model, outcome.path, outcome.status)
        children = self._children.get(key)
        if children is None:  # labels are worked out once per distinct key
            client, model = self._client(outcome.client_id), self._model(outcome.model)
            # a refused path is the client's choice: one label for all of them keeps the series bounded
            route = route_shape(outcome.path) if self.runtime.door.model_route(outcome.path) else OTHER
            labels = (client, model, route, f"{outcome.status // 100}xx")
            children = (self.requests.labels(*labels), self.errors.labels(*labels),
                        self.duration.labels(model, route), self.first_event.labels(model, route))
            if len(self._children) < 10_000:  # beyond: labels worked out per request (still bounded)
                self._children[key] = children
        requests, errors, duration, first_event = children
        requests.inc()
        if outcome.failed:
            errors.inc()
        duration.observe(outcome.duration_s)
        if outcome.first_event_s is not None:
            first_event.observe(outcome.first_event_s)

    def observe_usage(self, client_id: str, fields: dict) -> None:
        """Tokens and cost of one request: LiteLLM's half of its usage record (``usage.from_litellm``)."""
        client, model = self._client(client_id), self._model(fields.get("model_group"))
        for kind in TOKEN_KINDS:
            if count := fields.get(f"{kind}_tokens"):
                self.tokens.labels(client, model, kind).inc(count)
        if cost := fields.get("cost_usd"):
            self.cost.labels(client, model).inc(cost)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RuntimeCollector:
    """What the runtime counts anyway, and the inputs, read at scrape time only."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        metrics, runtime = self.metrics, self.metrics.runtime
        yield CounterMetricFamily("memory_proxy_supermemory_errors",
                                  "Answers through Supermemory that carried x-supermemory-error",
                                  value=runtime.supermemory_errors)
        yield CounterMetricFamily("memory_proxy_cloudflare_retries",
                                  "Requests to Supermemory retried after a Cloudflare 1200 refusal",
                                  value=runtime.cloudflare_retries)
        refused = CounterMetricFamily("memory_proxy_refused", "Requests the front door refused, by reason",
                                      labels=("reason",))
        for reason, count in runtime.door.refused.items():
            refused.add_metric((reason,), count)
        yield refused
        up, ready = metrics.litellm
        yield GaugeMetricFamily("memory_proxy_litellm_up", "LiteLLM answered its readiness probe at all", value=up)
        yield GaugeMetricFamily("memory_proxy_litellm_ready", "LiteLLM answered its readiness probe with 200",
                                value=ready)
        if runtime.tracing is not None:
            yield CounterMetricFamily("memory_proxy_trace_export_failures", "Batches of spans the collector did "
                                      "not take", value=runtime.tracing.failures)
        for name, read in list(metrics.inputs.items()):
            metric, help_text, kind = INPUTS[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(metric, help_text, value=float(read()))


def endpoint(probe: Callable[[Runtime], Awaitable[tuple[bool, bool]]]):
    """The ``GET /metrics`` handler; ``probe`` says whether LiteLLM is (up, ready). The route is
    served before ``ingress.admit``, so the front-door key is checked here (none needed
    without ``api_keys``, as for every path)."""
    from memory_proxy.server.ingress import authorized

    async def metrics(request: Request) -> Response:
        runtime: Runtime = request.state.runtime
        if not authorized(runtime, request):
            runtime.door.count_refusal("invalid_api_key")
            return error_response(401, "missing or wrong memory proxy key (Authorization: Bearer or x-api-key)")
        up, ready = await probe(runtime)
        runtime.metrics.litellm = (float(up), float(ready))
        return Response(runtime.metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})

    return metrics
