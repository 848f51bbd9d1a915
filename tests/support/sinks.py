"""Receivers in the test process for what the proxy and LiteLLM send out: an OTLP/HTTP trace
collector (protobuf decoded with opentelemetry-proto) and a ``generic_api`` sink. Each listens
on a free loopback port in a thread of its own and keeps what it got; ``fail_with`` makes it
refuse everything with that status (a collector or sink that is down for the others)."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict
    path: str = ""  # where it was posted
    headers: dict | None = None  # the export request's headers (lower-case names)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


class _Receiver:
    """A threaded HTTP server on 127.0.0.1 that hands each POST to ``take(path, headers, body)``."""

    def __init__(self) -> None:
        self.fail_with: int | None = None
        self.refused = 0  # posts answered with fail_with
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.fail_with is not None:
                    receiver.refused += 1
                    self.send_response(receiver.fail_with)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                content_type, answer = receiver.take(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                     body)
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, path: str, headers: dict, body: bytes) -> tuple[str, bytes]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Collector(_Receiver):
    """An OTLP/HTTP trace receiver: ``POST .../v1/traces`` with an ExportTraceServiceRequest, on
    any path prefix (Langfuse's is ``/api/public/otel``)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        super().__init__()

    def take(self, path: str, headers: dict, body: bytes) -> tuple[str, bytes]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            attrs = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(Span(
                        attrs.get("service.name"), s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                        s.name, s.kind, {kv.key: _value(kv.value) for kv in s.attributes}, path, headers))
        return "application/x-protobuf", ExportTraceServiceResponse().SerializeToString()

    def trace_of(self, request_id: str) -> list[Span]:
        """Every span of the trace whose root is the proxy's server span of ``request_id``."""
        roots = [s for s in self.spans if s.attributes.get("memory_proxy.request_id") == request_id]
        return [s for s in self.spans if roots and s.trace_id == roots[0].trace_id]


class Sink(_Receiver):
    """A ``generic_api`` endpoint: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list = []
        self.headers: list[dict] = []  # each post's headers (lower-case names)
        super().__init__()
        self.url += "/log"

    def take(self, path: str, headers: dict, body: bytes) -> tuple[str, bytes]:
        self.headers.append(headers)
        self.bodies.append(json.loads(body))
        return "application/json", b"{}"

    def events(self) -> list[dict]:
        """Every logged call (LiteLLM posts batches as JSON arrays)."""
        return [e for body in self.bodies for e in (body if isinstance(body, list) else [body])]
