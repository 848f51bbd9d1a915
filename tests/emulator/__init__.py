"""Offline emulator of the outside world, for the tests and the benchmark.

One Starlette app plays OpenAI, Anthropic, the Supermemory Memory Router and the slice of
Supermemory's Memory API (v5, ``/ns/{namespace}/...``) that ``start_proxies.py memory`` uses,
over one per-user-id memory store, with Cloudflare in front of both; it records every request
and can inject faults, so the real ``litellm`` binary and the memory proxy can run without
network access.

    python -m tests.emulator --host 127.0.0.1 --port 8999 [--chunk-delay 0.02]

One module per concern:

- ``app``: the routes; ``state``: what one app knows (and the fault modes);
- ``openai_api``, ``anthropic_api``: the providers' APIs; ``calls``: one model call as the
  provider or Supermemory's router answers it; ``streaming``: SSE, pacing, stream faults;
- ``router``: Supermemory's Memory Router; ``memory_api``: its Memory API (v5);
  ``memory_store``: what both remember per user id; ``cloudflare``: the clearance cookies;
- ``request_log``: every request received; ``control``: the ``/_emulator/...`` endpoints;
- ``fast``: ordinary chat completions answered inside uvicorn's protocol (the benchmark);
- ``process``: the command line (``__main__`` runs it).
"""

from tests.emulator.app import create_app
from tests.emulator.calls import NO_USER_ID
from tests.emulator.common import ANTHROPIC, KINDS, MODELS, OPENAI
from tests.emulator.fast import FastChatProtocol, fast_chat_protocol
from tests.emulator.memory_store import MemoryStore
from tests.emulator.process import main
from tests.emulator.request_log import RequestLog
from tests.emulator.state import FAULT_MODES, STREAM_FAULTS, EmulatorState
from tests.emulator.streaming import AbortStream

__all__ = ["ANTHROPIC", "FAULT_MODES", "KINDS", "MODELS", "NO_USER_ID", "OPENAI", "STREAM_FAULTS", "AbortStream",
           "EmulatorState", "FastChatProtocol", "MemoryStore", "RequestLog", "create_app", "fast_chat_protocol",
           "main"]
