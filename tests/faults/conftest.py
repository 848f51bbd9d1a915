"""Faults, bad input and secrets against the real processes.

One stack per session, started the way a user starts it (``start_proxies.py up --detach``):
the real ``litellm`` binary and the memory proxy in front of the upstream emulator, with a
short read timeout (3 s) and a small body limit (1 MiB) so that every limit can be hit
quickly. Modules that need another configuration start their own memory proxy (through the
launcher with ``--litellm-url``, or ``python -m memory_proxy`` directly) next to it.

The processes are started by ``tests/support/stacks.py``. Every secret this suite sets is
registered in ``SECRETS`` and every state folder in ``STATE_DIRS``;
``test_secrets.py`` (last) greps every log, every output and every answer body collected in
``SEEN`` for them. ``TALLY`` counts the faults survived and the bad inputs tried; the
counts are printed at the end of the run (no file quotes them: they would go stale).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT
from tests.support.configs import ANTHROPIC_KEY, config_text, model
from tests.support.ports import port_taken
from tests.support.stacks import Emulator, ProxyProcess, Stack, cli_env, new_stack, start_emulator, start_memory_proxy

READ_TIMEOUT = 3.0  # memory_proxy.timeouts.read of the fault stack
TOTAL_TIMEOUT = 8.0  # memory_proxy.timeouts.total of the fault stack
MAX_BODY = 1024 * 1024  # memory_proxy.max_body_bytes of the fault stack

KEYS = {
    "OPENAI_API_KEY": "sk-faults-openai-3f9c2a7d51e4",
    "ANTHROPIC_API_KEY": "sk-ant-faults-8e1b6c0f2d93",
    "SUPERMEMORY_API_KEY": "sm-faults-supermemory-5a7e9d1c",
}
FRONT_DOOR_KEY = "fd-faults-front-door-key-c4d8e2a6"
SECRETS: dict[str, str] = {**KEYS, "FRONT_DOOR_KEY": FRONT_DOOR_KEY}  # name -> value; master keys added later
STATE_DIRS: list[Path] = []
SEEN: list[tuple[str, str]] = []  # (where, text) of outputs and answer bodies, grepped at the end
TALLY: dict[str, Counter] = {"faults survived": Counter(), "bad inputs tried": Counter(),
                             "load carried without an error": Counter()}

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
PLAIN = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
MEMORY_CHAT = {"model": "memory/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
ANTHROPIC = {"model": "claude-3-5-haiku-latest", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def fault(name: str, n: int = 1) -> None:
    TALLY["faults survived"][name] += n


def bad_input(name: str, n: int = 1) -> None:
    TALLY["bad inputs tried"][name] += n


def load(name: str, n: int = 1) -> None:
    TALLY["load carried without an error"][name] += n


def seen(where: str, text: str | bytes) -> None:
    SEEN.append((where, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))


def assert_openai_error(response: httpx.Response, status: int | tuple[int, ...], where: str = "") -> dict:
    """An answer the proxy (or LiteLLM, reshaped) gives: OpenAI-style JSON with a message."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, f"{where}: {response.status_code} {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), \
        f"{where}: not JSON: {response.headers.get('content-type')} {response.text[:300]}"
    body = response.json()
    assert isinstance(body.get("error"), dict) and isinstance(body["error"].get("message"), str), \
        f"{where}: {body}"
    seen(f"error body ({where})", response.text)
    return body["error"]


# --- stacks ------------------------------------------------------------------------------


def fault_models(a: str, b: str) -> list[str]:
    """Model groups for fault injection, on the provider at ``a`` and Supermemory's router at ``b``."""
    return [model("faulty", "openai/gpt-4o-mini", f"{a}/v1"),
            model("faulty-claude", "anthropic/claude-3-5-haiku-latest", a, ANTHROPIC_KEY),
            model("memory/faulty", "openai/gpt-4o-mini", f"{b}/v3/{a}/v1")]


def fault_config(emu: Emulator, proxy_port: int, litellm_port: int, extra: str = "",
                 read_timeout: float = READ_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT) -> str:
    """The e2e config plus model groups for fault injection (so LiteLLM's per-group state after
    an injected failure never touches the groups other tests use), small limits, and ``extra``
    lines under ``memory_proxy``."""
    text = config_text(emu.provider_port, emu.supermemory_port, proxy_port, litellm_port,
                       f"  max_body_bytes: {MAX_BODY}\n  optional_routes: [audio]\n{extra}", models=fault_models,
                       read_timeout=read_timeout, total_timeout=total_timeout)
    # LiteLLM's own retries (2 by default, with back-off) and cool-downs would turn an injected
    # 500 into a 504 from the proxy's 3 s read timeout; without them the answer is LiteLLM's.
    return text.rstrip("\n") + "\nrouter_settings:\n  num_retries: 0\n  disable_cooldowns: true\n"


def make_stack(root: Path, emu: Emulator, *, extra: str = "", env: dict[str, str] | None = None,
               litellm_port: int | None = None, read_timeout: float = READ_TIMEOUT,
               total_timeout: float = TOTAL_TIMEOUT) -> Stack:
    st = new_stack(root, emu, env=env or cli_env(**KEYS), litellm_port=litellm_port,
                   config=lambda proxy_port, litellm_port: fault_config(emu, proxy_port, litellm_port, extra,
                                                                        read_timeout, total_timeout))
    STATE_DIRS.append(st.state)
    return st


def stop_stack(st: Stack) -> None:
    result = st.cli("down", timeout=120)
    seen("down", result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not port_taken(st.proxy_port), f"port {st.proxy_port} still taken after down"


@contextmanager
def proxy_in_front(st: Stack, litellm_url: str, where: str) -> Iterator[Stack]:
    """``st``'s memory proxy alone (``up --detach --litellm-url``) in front of ``litellm_url``
    until the block ends, then ``down``; ``up``'s output goes to ``SEEN`` as ``where``."""
    result = st.cli("up", "--detach", "--litellm-url", litellm_url, timeout=120)
    seen(where, result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield st
    finally:
        stop_stack(st)


def post_bytes(path: str, body: dict, *, close: bool = True) -> bytes:
    """A JSON POST byte for byte (Anthropic's version header included, for ``/v1/messages``)."""
    payload = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-length: {len(payload)}\r\n"
            + ("connection: close\r\n" if close else "") + "\r\n").encode() + payload


def walk_away(port: int, count: int, at_once: int, request: Callable[[int], bytes],
              reset: Callable[[int], bool] = lambda i: False) -> None:
    """``count`` clients, ``at_once`` at a time, each sending ``request(i)`` (a streaming
    request) on its own connection and leaving once the first event has arrived: closing the
    connection, or resetting it where ``reset(i)``, as a killed client does."""
    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(i))
        data = b""
        while b"data: " not in data:
            chunk = await reader.read(65536)
            assert chunk, "the stream closed before its first event"
            data += chunk
        if reset(i):
            writer.transport.abort()
        else:
            writer.close()

    async def run() -> None:
        gate = asyncio.Semaphore(at_once)

        async def gated(i: int) -> None:
            async with gate:
                await one(i)
        await asyncio.gather(*(gated(i) for i in range(count)))

    asyncio.run(run())


@pytest.fixture(scope="session")
def emu(tmp_path_factory) -> Emulator:
    emulator = start_emulator(tmp_path_factory.mktemp("faults-emulator"), chunk_delay=0.05, chunks=5)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, emu) -> Stack:
    """The real chain (launcher, LiteLLM, memory proxy) in front of the emulator, once per session."""
    if not (Path(sys.executable).parent / "litellm").exists():
        pytest.fail("the litellm executable is missing beside the test interpreter")
    st = make_stack(tmp_path_factory.mktemp("faults") / "stack", emu)
    try:
        st.up()
        seen("up --detach", st.last_up.stdout + st.last_up.stderr)
        SECRETS["LITELLM_MASTER_KEY (stack)"] = st.master_key()
        st.first_proxy_pid = st.pid("memory_proxy")
        yield st
    finally:
        stop_stack(st)
        assert not port_taken(st.litellm_port)


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack.proxy_url, timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_fault_left(request):
    """A fault a test set but did not use must not hit the next test."""
    yield
    if "emu" in request.fixturenames or "stack" in request.fixturenames:
        try:
            request.getfixturevalue("emu").clear_fault()
        except Exception:  # the emulator fixture may be gone at session end
            pass


# --- directly started memory proxies -----------------------------------------------------


def start_direct(config: Path, state: Path, port: int, litellm_url: str, *, secret: str,
                 master_key: str | None = "sk-faults-direct-master-0123456789", wait: bool = True,
                 extra_args: tuple[str, ...] = (), env_extra: dict[str, str] | None = None) -> ProxyProcess:
    """``python -m memory_proxy`` (no supervisor) with a known egress secret, its state folder
    registered for ``test_secrets.py``."""
    env = cli_env(**KEYS, FAULTS_FRONT_KEY=FRONT_DOOR_KEY, MEMORY_PROXY_EGRESS_SECRET=secret, **(env_extra or {}))
    if master_key:
        env["LITELLM_MASTER_KEY"] = master_key
    env["PYTHONPATH"] = str(ROOT)
    state.mkdir(parents=True, exist_ok=True)
    if state not in STATE_DIRS:
        STATE_DIRS.append(state)
    return start_memory_proxy(config, state, port, "--litellm-url", litellm_url, "--port", str(port), *extra_args,
                              env=env, wait=wait)


# --- the counts at the end ---------------------------------------------------------------


def pytest_terminal_summary(terminalreporter):
    if not any(TALLY.values()):
        return
    terminalreporter.section("faults and bad input (tests/faults)")
    for title, counter in TALLY.items():
        terminalreporter.write_line(f"{title}: {sum(counter.values())} in {len(counter)} kinds")
        for name, n in sorted(counter.items()):
            terminalreporter.write_line(f"  {n:6d}  {name}")
    for line in METRICS:
        terminalreporter.write_line(line)


METRICS: list[str] = []  # measured numbers (RSS growth, durations) shown at the end


def metric(line: str) -> None:
    METRICS.append(line)
