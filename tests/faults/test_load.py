"""Load, through the launcher's memory proxy in front of the emulator alone
(``up --litellm-url``): LiteLLM serves about 70 requests a second on these 2 cores, so
20,000 requests through it would take 5 minutes and measure LiteLLM; here they take under
a minute and measure the memory proxy. 200 concurrent streams also go through the real
chain once (test_upstream.py and test_litellm.py cover the rest of it).

- 1,000 clients walk away mid-stream: each upstream request ends, and the proxy is left
  with no connection, task or file descriptor more than before;
- 200 concurrent streams all complete;
- 20,000 requests in a row without one error, with the RSS growth reported and bounded.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.support.stacks import cli_env, start_emulator

from .conftest import (
    ANTHROPIC_HEADERS,
    CHAT,
    KEYS,
    MESSAGES,
    fault,
    load,
    make_stack,
    metric,
    post_bytes,
    proxy_in_front,
    walk_away,
)

OPENAI_STREAM = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "load test"}]}


@pytest.fixture(scope="module")
def load_emu(tmp_path_factory):
    emulator = start_emulator(tmp_path_factory.mktemp("load-emulator"), chunk_delay=0.01, chunks=5)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def alone(tmp_path_factory, load_emu):
    st = make_stack(tmp_path_factory.mktemp("alone"), load_emu,
                    env=cli_env(**KEYS, LITELLM_MASTER_KEY="sk-faults-load-master-key-0123"))
    with proxy_in_front(st, load_emu.url, "up --litellm-url (load)"):
        yield st


def proxy_state(st) -> dict:
    proc = st.process("memory_proxy")
    health = httpx.get(st.proxy_url + "/health", trust_env=False, timeout=10).json()
    return {"connections": len(st.proxy_connections()), "fds": proc.num_fds(), "tasks": health["memory_proxy"]["tasks"],
            "rss_mb": proc.memory_info().rss / 2**20}


def settle(st, baseline: dict, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        now = proxy_state(st)
        if (now["connections"] <= baseline["connections"] and now["tasks"] <= baseline["tasks"]
                and now["fds"] <= baseline["fds"]) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


async def read_sse_to_end(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = await reader.read(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_thousand_clients_walking_away_leave_nothing_behind(alone, load_emu):
    with httpx.Client(base_url=alone.proxy_url, trust_env=False, timeout=30) as c:  # warm the pools
        for _ in range(20):
            assert c.post(CHAT, json={**OPENAI_STREAM, "stream": False}).status_code == 200
    time.sleep(0.5)
    baseline = proxy_state(alone)
    emu_before = load_emu.stats()
    load_emu.fault("endless_stream", count=1000, delay=0.05)

    def request(i: int) -> bytes:
        path, body = (CHAT, OPENAI_STREAM) if i % 2 else (MESSAGES, {**OPENAI_STREAM, "max_tokens": 16,
                                                                     "model": "claude-3-5-haiku-latest"})
        return post_bytes(path, body, close=False)

    started = time.monotonic()
    walk_away(alone.proxy_port, 1000, 20, request, reset=lambda i: i % 3 == 0)
    took = time.monotonic() - started
    emu_after = load_emu.wait_streams(emu_before["active_streams"], timeout=10)
    assert emu_after["active_streams"] == emu_before["active_streams"], emu_after
    assert emu_after["client_disconnects"] - emu_before["client_disconnects"] == 1000, emu_after
    after = settle(alone, baseline)
    metric(f"1,000 walk-aways in {took:.1f} s: proxy connections {baseline['connections']} -> "
           f"{after['connections']}, tasks {baseline['tasks']} -> {after['tasks']}, fds {baseline['fds']} -> "
           f"{after['fds']}, RSS {baseline['rss_mb']:.1f} -> {after['rss_mb']:.1f} MiB")
    assert after["connections"] <= baseline["connections"], (baseline, after, alone.proxy_connections())
    assert after["tasks"] <= baseline["tasks"], (baseline, after)
    assert after["fds"] <= baseline["fds"], (baseline, after)
    assert after["rss_mb"] - baseline["rss_mb"] < 15, (baseline, after)
    log = (alone.state / "logs" / "memory.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-2000:]
    fault("client walks away mid-stream (memory proxy alone)", 1000)


def test_two_hundred_concurrent_streams(alone, load_emu):
    baseline = proxy_state(alone)
    port = alone.proxy_port

    async def stream(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path, body = (CHAT, OPENAI_STREAM) if i % 2 else (MESSAGES, {**OPENAI_STREAM, "max_tokens": 16,
                                                                     "model": "claude-3-5-haiku-latest"})
        writer.write(post_bytes(path, {**body, "messages": [{"role": "user", "content": f"stream {i}"}]}))
        data = await reader.read(-1)
        writer.close()
        return data

    async def run() -> list[bytes]:
        return await asyncio.gather(*(stream(i) for i in range(200)))

    started = time.monotonic()
    answers = asyncio.run(run())
    took = time.monotonic() - started
    for i, data in enumerate(answers):
        assert data.startswith(b"HTTP/1.1 200") and b'"error"' not in data, data[:300]
        assert (b"data: [DONE]" in data) if i % 2 else (b"event: message_stop" in data), data[-300:]
    metric(f"200 concurrent streams (memory proxy alone) in {took:.1f} s")
    assert took < 30
    after = settle(alone, baseline)
    assert after["tasks"] <= baseline["tasks"] and after["connections"] <= baseline["connections"] + 5, after
    load("concurrent streams (200 at once, memory proxy alone)", 200)


@pytest.fixture(scope="module")
def patient(tmp_path_factory, stack):
    """A memory proxy (launcher, ``--litellm-url``) in front of the session's LiteLLM with the
    timeouts of a real installation (read 60 s, total 300 s): under 200 streams on 2 cores
    LiteLLM pauses longer than the fault stack's 3 s and takes longer than its 8 s."""
    st = make_stack(tmp_path_factory.mktemp("patient"), stack.emu, read_timeout=60, total_timeout=300,
                    env=cli_env(**KEYS, LITELLM_MASTER_KEY=stack.master_key()))
    with proxy_in_front(st, f"http://127.0.0.1:{stack.litellm_port}", "up --litellm-url (patient)"):
        yield st


def test_two_hundred_concurrent_streams_through_litellm(patient):
    """The same burst through the real LiteLLM, once."""
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(base_url=patient.proxy_url, trust_env=False, timeout=120, limits=limits) as c:
            async def one(i: int) -> tuple[int, bytes]:
                path = CHAT if i % 2 else MESSAGES
                model = "gpt-4o-mini" if i % 2 else "claude-3-5-haiku-latest"
                body = {"model": model, "stream": True, "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"burst {i}"}]}
                async with c.stream("POST", path, json=body, headers=ANTHROPIC_HEADERS) as answer:
                    return answer.status_code, await answer.aread()
            return await asyncio.gather(*(one(i) for i in range(200)))

    started = time.monotonic()
    results = asyncio.run(run())
    took = time.monotonic() - started
    # Every stream must succeed. The rare failures once seen here ("Connection error", "Can not
    # write request body") were LiteLLM's aiohttp pool, which keeps idle connections 15 s
    # (AIOHTTP_KEEPALIVE_TIMEOUT), writing to one the emulator had closed after uvicorn's 5 s;
    # the emulator now keeps them 75 s, so LiteLLM always closes first.
    for i, (status, data) in enumerate(results):
        assert status == 200 and b'"error"' not in data, (i, status, data[-300:])
        assert (b"data: [DONE]" in data) if i % 2 else (b"message_stop" in data), data[-300:]
    metric(f"200 concurrent streams through LiteLLM in {took:.1f} s")
    load("concurrent streams (200 at once, through LiteLLM)", 200)


class KeepAlive:
    """A minimal HTTP/1.1 keep-alive client (httpx would spend more CPU than the proxy under test)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None

    async def request(self, method: str, path: str, body: dict | None, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.reader is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head.append("content-type: application/json")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = None, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length or 0)
        data = b""
        while (size := int((await self.reader.readline()).split(b";")[0], 16)):
            data += await self.reader.readexactly(size + 2)
        await self.reader.readline()
        return status, data

    def close(self) -> None:
        if self.reader is not None:
            self.writer.close()


def test_twenty_thousand_requests_in_a_row(alone, load_emu):
    """Eight keep-alive clients, 2,500 requests each, one after another on each (chat, streams,
    Anthropic messages, model listings, memory routing info). RSS is sampled every 1,000."""
    proc = alone.process("memory_proxy")
    kinds = [
        ("POST", CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "in a row"}]}, {}),
        ("POST", CHAT, OPENAI_STREAM, {}),
        ("POST", MESSAGES, {"model": "claude-3-5-haiku-latest", "max_tokens": 8,
                            "messages": [{"role": "user", "content": "in a row"}]}, ANTHROPIC_HEADERS),
        ("GET", "/v1/models", None, {}),
        ("GET", "/v1/models", None, ANTHROPIC_HEADERS),
        ("GET", "/memory-routing/info", None, {"user-agent": "claude-cli/2.0"}),
    ]
    samples: list[float] = []
    errors: list[str] = []
    done = [0]

    async def client(n: int, worker: int) -> None:
        conn = KeepAlive(alone.proxy_port)
        try:
            for i in range(n):
                method, path, body, headers = kinds[(i + worker) % len(kinds)]
                status, data = await conn.request(method, path, body,
                                                  {**headers, "x-memory-user-id": f"load-{worker}-{i % 50}"})
                if status != 200 or b'"error"' in data:
                    errors.append(f"{method} {path}: {status} {data[:200]!r}")
                done[0] += 1
                if done[0] % 1000 == 0:
                    samples.append(proc.memory_info().rss / 2**20)
                    if done[0] % 5000 == 0:
                        load_emu.forget_requests()
        finally:
            conn.close()

    async def run() -> None:
        await asyncio.gather(*(client(2500, w) for w in range(8)))

    started = time.monotonic()
    asyncio.run(run())
    took = time.monotonic() - started
    assert done[0] == 20_000
    assert not errors, errors[:5]
    warm, last = samples[1], samples[-1]
    metric(f"20,000 requests in a row (memory proxy alone) in {took:.0f} s ({20_000 / took:.0f}/s); RSS "
           f"{samples[0]:.1f} MiB after 1,000, {warm:.1f} after 2,000, {last:.1f} after 20,000 "
           f"(growth {last - warm:+.1f} MiB)")
    assert last - warm < 15, samples
    load("requests in a row (memory proxy alone)", 20_000)
