"""The emulator's Starlette app: every route of every emulated service, one state."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from tests.emulator import control
from tests.emulator import memory_api as api
from tests.emulator.calls import provider_endpoint
from tests.emulator.router import memory_router
from tests.emulator.state import EmulatorState


def create_app(*, chunk_delay: float = 0.02, chunks: int = 5) -> Starlette:
    routes = [
        Route("/_emulator/reset", control.control_reset, methods=["POST"]),
        Route("/_emulator/requests", control.control_requests, methods=["GET", "DELETE"]),
        Route("/_emulator/stats", control.control_stats, methods=["GET"]),
        Route("/_emulator/faults", control.control_faults, methods=["POST"]),
        Route("/_emulator/cloudflare", control.control_cloudflare, methods=["POST"]),
        Route("/_emulator/memories", control.control_memories, methods=["GET"]),
        Route("/_emulator/supermemory_keys", control.control_supermemory_keys, methods=["POST"]),
        # LiteLLM's unauthenticated probes, so the emulator can stand in for LiteLLM behind the proxy.
        Route("/health/liveliness", control.health_probe, methods=["GET"]),
        Route("/health/readiness", control.health_probe, methods=["GET"]),
        Route("/v1/chat/completions", provider_endpoint("chat/completions"), methods=["POST"]),
        Route("/v1/messages", provider_endpoint("messages"), methods=["POST"]),
        Route("/v1/responses", provider_endpoint("responses"), methods=["POST"]),
        Route("/v1/embeddings", provider_endpoint("embeddings"), methods=["POST"]),
        Route("/v1/models", provider_endpoint("models"), methods=["GET"]),
        Route("/v3/{target:path}", memory_router, methods=["GET", "POST"]),
        Route("/ns", api.memory_api(api.list_namespaces), methods=["GET"]),
        Route("/ns/{ns}/list/{type}", api.memory_api(api.list_resources), methods=["POST"]),
        Route("/ns/{ns}/search", api.memory_api(api.search_memories), methods=["POST"]),
        Route("/ns/{ns}/profile", api.memory_api(api.profile), methods=["POST"]),
        Route("/ns/{ns}/document", api.memory_api(api.add_document), methods=["POST"]),
        Route("/ns/{ns}/memories", api.memory_api(api.forget_memories), methods=["DELETE"]),
        Route("/ns/{ns}/memories/{id}", api.memory_api(api.get_memory), methods=["GET"]),
        Route("/{path:path}", control.not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = EmulatorState(chunk_delay, chunks)
    return app
