"""Load generators: wrk (compiled), several Python processes when wrk is missing, and one httpx
client on one keep-alive connection (as the OpenAI and Anthropic Python SDKs use)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .common import WRK_INSTALL, log, pct

PROMPT = "Say hello in one short sentence, please."


@dataclass
class Endpoint:
    """Where one path's requests go: a port, the key it wants and the model group asked for."""

    name: str
    port: int
    key: str
    model: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def body(self, stream: bool = False) -> bytes:
        data = {"model": self.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}
        if stream:
            data["stream"] = True
        return json.dumps(data, separators=(",", ":")).encode()

    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "authorization": f"Bearer {self.key}",
                "user-agent": "memory-proxy-benchmark/1"}


def raw_request(endpoint: Endpoint, stream: bool = False) -> bytes:
    body = endpoint.body(stream)
    head = ["POST /v1/chat/completions HTTP/1.1", f"host: 127.0.0.1:{endpoint.port}",
            f"content-length: {len(body)}"] + [f"{k}: {v}" for k, v in endpoint.headers().items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_JSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50\\":%d,\\"p95\\":%d," ..
    "\\"p99\\":%d,\\"errors\\":%d,\\"non2xx\\":%d}}\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


class Wrk:
    name = "wrk"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        out = subprocess.run([binary, "-v"], capture_output=True, text=True)
        match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
        self.version = f"wrk {match.group(1) if match else '?'}"

    def run(self, endpoint: Endpoint, clients: int, duration: float) -> dict:
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in endpoint.headers().items())
        script = self.workdir / f"wrk_{endpoint.name}.lua"
        script.write_text(_LUA.format(body=endpoint.body().decode(), headers=headers))
        threads = 1 if clients < 4 else 2
        argv = [self.binary, f"-t{threads}", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
                "-s", str(script), endpoint.url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        match = re.search(r"BENCH_JSON (\{.*\})", out.stdout)
        if not match:
            raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")
        d = json.loads(match.group(1))
        seconds = d["duration_us"] / 1e6
        return {"requests": d["requests"], "seconds": round(seconds, 3), "rps": d["requests"] / seconds,
                "p50_ms": d["p50"] / 1000, "p95_ms": d["p95"] / 1000, "p99_ms": d["p99"] / 1000,
                "errors": d["errors"] + d["non2xx"], "generator_cpu": cpu / seconds}

    def close(self) -> None:
        pass


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (content-length or chunked); return the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        match = re.search(rb"content-length:\s*(\d+)", lower)
        await reader.readexactly(int(match.group(1)) if match else 0)
    return status


def _py_load_worker(args: tuple) -> dict:
    """One load process: ``conns`` keep-alive connections, each sending back to back."""
    port, request, conns, duration = args
    latencies: list[float] = []
    errors = 0

    async def one(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - start)
                if status >= 400:
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(start + duration) for _ in range(conns)))
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


class PyLoad:
    """Fallback when wrk is missing: several Python processes (raw asyncio HTTP/1.1)."""

    name = "Python"

    def __init__(self) -> None:
        self.procs = max(2, os.cpu_count() or 2)
        self.version = f"{self.procs} Python load processes (install wrk for a compiled generator: {WRK_INSTALL})"
        self.pool = multiprocessing.get_context("spawn").Pool(self.procs)

    def run(self, endpoint: Endpoint, clients: int, duration: float) -> dict:
        procs = min(self.procs, clients)
        shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        request = raw_request(endpoint)
        results = self.pool.map(_py_load_worker, [(endpoint.port, request, n, duration) for n in shares])
        latencies = [x for r in results for x in r["latencies"]]
        seconds = max(r["seconds"] for r in results)
        return {"requests": len(latencies), "seconds": round(seconds, 3), "rps": len(latencies) / seconds,
                "p50_ms": pct(latencies, 50) * 1000, "p95_ms": pct(latencies, 95) * 1000,
                "p99_ms": pct(latencies, 99) * 1000, "errors": sum(r["errors"] for r in results)}

    def close(self) -> None:
        self.pool.terminate()


def generator(choice: str, workdir: Path) -> Wrk | PyLoad:
    """``--generator auto|wrk|python``: wrk when asked for or found, else the Python processes."""
    binary = shutil.which("wrk") if choice in ("auto", "wrk") else None
    if choice == "wrk" and not binary:
        sys.exit(f"wrk not found; install it: {WRK_INSTALL}")
    if binary:
        return Wrk(binary, workdir)
    gen = PyLoad()
    log(f"wrk not found, falling back to {gen.version}")
    return gen


def httpx_latency(endpoint: Endpoint, count: int) -> dict:
    """One httpx client on one keep-alive connection, request after request."""
    samples, errors = [], 0
    body, headers = endpoint.body(), endpoint.headers()
    with httpx.Client(timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            response = client.post(endpoint.url, content=body, headers=headers)
            samples.append(time.perf_counter() - start)
            errors += response.status_code >= 400
    return {"requests": count, "p50_ms": pct(samples, 50) * 1000, "p95_ms": pct(samples, 95) * 1000,
            "p99_ms": pct(samples, 99) * 1000, "errors": errors}
