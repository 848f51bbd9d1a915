#!/usr/bin/env python3
"""Benchmark every hop side by side: ``python3 scripts/benchmark.py [--quick] [--json PATH]``.

One run, offline, no keys: starts the project's upstream emulator (tests/emulator.py), the
full chain with ``start_proxies.py up --detach`` (real LiteLLM binary), a second memory
proxy alone with ``up --detach --litellm-url <emulator>`` and a third in SDK mode with
``up --detach --mode sdk`` (LiteLLM's Router in-process), then measures on the same machine,
with the same request bodies, interleaved round by round so that the machine's noise hits
every path alike:

  1. direct        the emulator itself (one process per core sharing a port: stateless load)
  2. proxy         the memory proxy alone in front of the emulator
  3. litellm       LiteLLM alone in front of the emulator
  4. chain         memory proxy -> LiteLLM -> emulator (ordinary model)
  5. chain_sm      memory proxy -> LiteLLM -> egress -> emulator (Supermemory-backed model)
  6. sdk           SDK-mode memory proxy (Router in-process) -> emulator (ordinary model)
  7. sdk_sm        SDK-mode memory proxy -> its egress -> emulator (Supermemory-backed model)

For each: latency p50/p95/p99 with one client (wrk, and an httpx client like the OpenAI and
Anthropic Python SDKs use); requests/s with p50/p99 at 20 and 100 clients; streaming time to
the first event and the largest extra delay any chunk gets (the emulator spaces its chunks),
and beside it a non-streamed answer after a chunk delay of idle (what waking costs); plus the
memory proxy's RSS before and after 50,000 requests, and the launcher's ``--help``, ``status``
and ``up --detach`` times. Targets are judged on ratios within the run (absolute times on
shared machines are noise). SDK mode (6, 7) is compared with binary mode (4, 5) as
informative ratios: latency, throughput, first streamed event, RSS (the SDK process against
LiteLLM's and the memory proxy's together) and ``up --detach`` until healthy. Prints one table
and writes the same figures as JSON.

Load generator: ``wrk`` (Debian/Ubuntu: ``sudo apt-get install -y wrk``; macOS: ``brew install
wrk``). Without it the script falls back to several Python load processes and says so; the
"generator headroom" line shows whether the generator could have been the bottleneck.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory_proxy.launcher import bootstrap  # noqa: E402  (standard library only)

if not bootstrap.in_project_venv():
    # Remember the interpreter the user typed: `status` and `--help` are timed as they run it.
    os.environ.setdefault("BENCH_USER_PYTHON", os.path.realpath(sys.executable))
bootstrap.reexec_in_venv()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import bench_startup  # noqa: E402  (scripts/: the part "first requests and restarts")
import httpx  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

PATHS = ("direct", "proxy", "litellm", "chain", "chain_sm", "sdk", "sdk_sm")
LABELS = {
    "direct": "1 emulator directly",
    "proxy": "2 memory proxy alone",
    "litellm": "3 LiteLLM alone",
    "chain": "4 full chain",
    "chain_sm": "5 full chain, Supermemory",
    "sdk": "6 SDK mode",
    "sdk_sm": "7 SDK mode, Supermemory",
}
SDK_PAIRS = (("sdk", "chain"), ("sdk_sm", "chain_sm"))  # SDK mode vs binary mode, same model
PROMPT = "Say hello in one short sentence, please."
WRK_INSTALL = "sudo apt-get install -y wrk   (Debian/Ubuntu; macOS: brew install wrk)"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def pct(values: list[float], p: float) -> float:
    """Percentile by nearest rank (values need not be sorted)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def med(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


@dataclass
class Target:
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


# --- load generators -----------------------------------------------------------------------

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

    def run(self, target: Target, clients: int, duration: float) -> dict:
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers().items())
        script = self.workdir / f"wrk_{target.name}.lua"
        script.write_text(_LUA.format(body=target.body().decode(), headers=headers))
        threads = 1 if clients < 4 else 2
        argv = [self.binary, f"-t{threads}", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
                "-s", str(script), target.url]
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


def _raw_request(target: Target, stream: bool = False) -> bytes:
    body = target.body(stream)
    head = ["POST /v1/chat/completions HTTP/1.1", f"host: 127.0.0.1:{target.port}",
            f"content-length: {len(body)}"] + [f"{k}: {v}" for k, v in target.headers().items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
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
                status = await _read_response(reader)
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

    def run(self, target: Target, clients: int, duration: float) -> dict:
        procs = min(self.procs, clients)
        shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        results = self.pool.map(_py_load_worker, [(target.port, _raw_request(target), n, duration) for n in shares])
        latencies = [x for r in results for x in r["latencies"]]
        seconds = max(r["seconds"] for r in results)
        return {"requests": len(latencies), "seconds": round(seconds, 3), "rps": len(latencies) / seconds,
                "p50_ms": pct(latencies, 50) * 1000, "p95_ms": pct(latencies, 95) * 1000,
                "p99_ms": pct(latencies, 99) * 1000, "errors": sum(r["errors"] for r in results)}

    def close(self) -> None:
        self.pool.terminate()


def httpx_latency(target: Target, count: int) -> dict:
    """One httpx client on one keep-alive connection, request after request."""
    samples, errors = [], 0
    body, headers = target.body(), target.headers()
    with httpx.Client(timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            response = client.post(target.url, content=body, headers=headers)
            samples.append(time.perf_counter() - start)
            errors += response.status_code >= 400
    return {"requests": count, "p50_ms": pct(samples, 50) * 1000, "p95_ms": pct(samples, 95) * 1000,
            "p99_ms": pct(samples, 99) * 1000, "errors": errors}


# --- streaming ---------------------------------------------------------------------------------


class StreamClient:
    """A raw keep-alive HTTP/1.1 client that timestamps every SSE event as it arrives."""

    def __init__(self, target: Target, stream: bool = True) -> None:
        self.target = target
        self.request = _raw_request(target, stream=stream)
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock:
            self.sock.close()
            self.sock = None

    def once(self) -> dict:
        """One answer (see ``_once``); anything but a 200 stops the run."""
        reused = self.sock is not None
        try:
            sample = self._once()
        except (ConnectionError, OSError):
            self.close()
            if not reused:
                raise
            sample = self._once()  # the server had closed the idle connection: once more, on a new one
        if sample["status"] != 200:
            raise RuntimeError(f"{self.target.name} answered {sample['status']}")
        return sample

    def _once(self) -> dict:
        """One streamed answer: when its first body byte came, and for each SSE event when it
        arrived and (from the emulator's ``emulator_sent`` stamp, when it survives the path)
        when the upstream sent it. One clock: time.monotonic() is CLOCK_MONOTONIC, machine-wide."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.target.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        start = time.monotonic()
        sock.sendall(self.request)
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the headers")
            raw += data
        now = time.monotonic()
        head, rest = raw.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        match = re.search(rb"content-length:\s*(\d+)", head.lower())
        remaining = int(match.group(1)) if match else None
        pending, text, first_byte, done = rest, b"", None, False
        arrived: list[float] = []
        sent: list[float | None] = []
        while True:
            body = b""
            if chunked:
                while True:
                    line_end = pending.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(pending[:line_end].split(b";")[0], 16)
                    if len(pending) < line_end + 2 + size + 2:
                        break
                    body += pending[line_end + 2:line_end + 2 + size]
                    pending = pending[line_end + 2 + size + 2:]
                    if size == 0:
                        done = True
                        break
            else:
                body, pending = pending, b""
                remaining = (remaining or 0) - len(body)
                done = remaining <= 0
            if body:
                if first_byte is None:
                    first_byte = now - start
                text += body.replace(b"\r\n", b"\n")
                while b"\n\n" in text:
                    event, text = text.split(b"\n\n", 1)
                    if not event.strip():
                        continue
                    arrived.append(now)
                    stamp = re.search(rb'"emulator_sent": ?([0-9.]+)', event)
                    sent.append(float(stamp.group(1)) if stamp else None)
            if done:
                break
            data = sock.recv(65536)
            now = time.monotonic()
            if not data:
                self.close()
                break
            pending += data
        return {"status": status, "first_byte": first_byte, "events": [t - start for t in arrived],
                "transit": [a - s_ for a, s_ in zip(arrived, sent) if s_ is not None]}  # [DONE] has no stamp


def idle_latency(target: Target, count: int, pause: float) -> dict:
    """Median time to a non-streamed answer's first body byte (raw client, one keep-alive
    connection), back to back and with ``pause`` s of idle before each request.

    A stream's first event comes after the previous stream's paced chunks, when every process
    on the path has been asleep for a chunk delay; waking them costs more than the answer
    itself on this kind of VM. This shows that cost apart from streaming."""
    client = StreamClient(target, stream=False)
    try:
        warm = [client.once()["first_byte"] for _ in range(count)]
        idle = []
        for _ in range(count):
            time.sleep(pause)
            idle.append(client.once()["first_byte"])
    finally:
        client.close()
    return {"warm_ms": med(warm) * 1000, "idle_ms": med(idle) * 1000}


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    env: dict = field(default_factory=dict)
    emulator: subprocess.Popen | None = None
    direct: list[subprocess.Popen] = field(default_factory=list)  # the direct path's emulator processes
    states: list[tuple[Path, Path]] = field(default_factory=list)  # (config, state dir) started with up

    def launcher(self, config: Path, state: Path, *argv: str, python: str | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [python or sys.executable, str(ROOT / "start_proxies.py"), "--config", str(config),
               "--state-dir", str(state), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout)

    def _emulator(self, ports: list[int], log_name: str, *extra: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "tests.emulator", "--host", "127.0.0.1"]
        for port in ports:
            argv += ["--port", str(port)]
        argv += ["--chunk-delay", str(self.args.chunk_delay), "--chunks", str(self.args.chunks), "--stamp-events",
                 *extra]
        out = open(self.workdir / log_name, "wb")
        return subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=self.env)

    def start_emulator(self, ports: list[int], direct_port: int, direct_processes: int) -> None:
        """The emulator on ``ports`` (one process: one state for the providers and Supermemory),
        and ``direct_processes`` more sharing ``direct_port`` for the direct path only: one Python
        process tops out at a few thousand requests/s, below what the generator can drive."""
        self.emulator = self._emulator(ports, "emulator.log")
        for i in range(direct_processes):
            self.direct.append(self._emulator([direct_port], f"emulator-direct-{i}.log", "--reuse-port"))
        deadline = time.monotonic() + 30
        for port in (ports[0], direct_port):
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in [self.emulator, *self.direct]):
                    raise RuntimeError("the emulator did not start; see " + str(self.workdir / "emulator*.log"))
                time.sleep(0.1)

    def settle(self, port: int, quiet: float = 0.3, limit: float = 30.0) -> None:
        """Wait until no request has reached the emulator for ``quiet`` s (a load run leaves
        LiteLLM a backlog of abandoned requests that would slow the next run), then clear
        the emulator's request record so its memory stays flat."""
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            try:
                count = httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=10).json()["requests"]
            except (httpx.HTTPError, ValueError, KeyError):
                count = None
            if count is not None and count == last:
                break
            last = count
            time.sleep(quiet)
        try:
            httpx.delete(f"http://127.0.0.1:{port}/_emulator/requests", timeout=10)
        except httpx.HTTPError:
            pass

    def stop(self) -> None:
        for config, state in self.states:
            try:
                self.launcher(config, state, "down", timeout=60)
            except (subprocess.SubprocessError, OSError) as exc:
                log(f"down failed for {state}: {exc}")
        self.states.clear()
        for proc in filter(None, [self.emulator, *self.direct]):
            if proc.poll() is None:
                proc.terminate()
        for proc in filter(None, [self.emulator, *self.direct]):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.emulator = None
        self.direct.clear()


def write_config(path: Path, *, port: int, litellm_port: int, provider: int, supermemory: int) -> None:
    provider_base = f"http://127.0.0.1:{provider}/v1"
    sm_base = f"http://127.0.0.1:{supermemory}"
    config = {
        "model_list": [
            {"model_name": "plain", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": provider_base,
                                                       "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
            {"model_name": "memory", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                        "api_base": f"{sm_base}/v3/{provider_base}",
                                                        "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
        ],
        "user_id_mappings": {"default_user_id": "bench"},
        "memory_proxy": {"host": "127.0.0.1", "port": port, "litellm_port": litellm_port,
                         "supermemory": {"base_url": sm_base, "api_key": "os.environ/BENCH_SUPERMEMORY_KEY"}},
    }
    path.write_text("# written by scripts/benchmark.py\n" + yaml.safe_dump(config, sort_keys=False))


def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "?"
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "loadavg_at_start": list(os.getloadavg()),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children, in MB."""
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def cpu_s(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# --- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    workdir = Path(tempfile.mkdtemp(prefix="memory-proxy-bench-"))
    json_path = Path(args.json) if args.json else workdir / "benchmark.json"
    provider, sm_port, chain_port, litellm_port, alone_port, unused, sdk_port, direct_port = free_ports(8)
    direct_processes = args.direct_processes or os.cpu_count() or 1
    master = "sk-bench-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_PROXY_")}
    env.update(LITELLM_MASTER_KEY=master, BENCH_PROVIDER_KEY="sk-emulator-" + secrets.token_hex(8),
               BENCH_SUPERMEMORY_KEY="sm-emulator-" + secrets.token_hex(8), PYTHONUNBUFFERED="1")
    bench = Bench(args, workdir, env)
    results: dict = {"machine": machine(), "quick": quick, "rounds": rounds, "workdir": str(workdir),
                     "direct_processes": direct_processes}

    wrk_binary = shutil.which("wrk") if args.generator in ("auto", "wrk") else None
    if args.generator == "wrk" and not wrk_binary:
        sys.exit(f"wrk not found; install it: {WRK_INSTALL}")
    gen = Wrk(wrk_binary, workdir) if wrk_binary else PyLoad()
    if not wrk_binary:
        log(f"wrk not found, falling back to {gen.version}")
    results["generator"] = gen.version
    results["generator_name"] = gen.name  # wrk or Python: names the 1-client column measured with it

    chain_cfg, chain_state = workdir / "chain.yaml", workdir / "state-chain"
    alone_cfg, alone_state = workdir / "alone.yaml", workdir / "state-alone"
    write_config(chain_cfg, port=chain_port, litellm_port=litellm_port, provider=provider, supermemory=sm_port)
    write_config(alone_cfg, port=alone_port, litellm_port=unused, provider=provider, supermemory=sm_port)
    sdk_cfg, sdk_state = workdir / "sdk.yaml", workdir / "state-sdk"
    write_config(sdk_cfg, port=sdk_port, litellm_port=unused, provider=provider, supermemory=sm_port)
    user_python = os.environ.get("BENCH_USER_PYTHON") or sys.executable

    def on_signal(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        log(f"work folder {workdir}; generator: {gen.version}")
        bench.start_emulator([provider, sm_port], direct_port, direct_processes)

        # --- the launcher -----------------------------------------------------------------------
        launcher: dict = {"python": user_python}
        launcher["help_s"] = timed(lambda: bench.launcher(chain_cfg, chain_state, "--help", python=user_python),
                                   5)
        log("up --detach: LiteLLM and the memory proxy (the full chain) ...")
        ready_at: list[float] = []

        def watch_litellm(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    if httpx.get(f"http://127.0.0.1:{litellm_port}/health/readiness", timeout=1).status_code == 200:
                        ready_at.append(time.time())
                        return
                except httpx.HTTPError:
                    pass
                stop.wait(0.05)
        stop = threading.Event()
        watcher = threading.Thread(target=watch_litellm, args=(stop,), daemon=True)
        watcher.start()
        started = time.time()
        bench.states.append((chain_cfg, chain_state))
        up = bench.launcher(chain_cfg, chain_state, "up", "--detach", python=user_python, timeout=400)
        up_s = time.time() - started
        stop.set()
        watcher.join(2)
        if up.returncode != 0:
            raise RuntimeError(f"up --detach failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        status = json.loads(bench.launcher(chain_cfg, chain_state, "status", "--json").stdout)
        ll_pid = status["processes"]["litellm"]["pid"]
        chain_pid = status["processes"]["memory_proxy"]["pid"]
        ll_start = (ready_at[0] - psutil.Process(ll_pid).create_time()) if ready_at and ll_pid else None
        launcher.update(up_detach_s=up_s, litellm_own_start_s=ll_start)
        log(f"up --detach took {up_s:.1f} s (LiteLLM's own start: {ll_start or float('nan'):.1f} s)")
        launcher["status_s"] = timed(lambda: bench.launcher(chain_cfg, chain_state, "status", python=user_python), 5)

        started = time.time()
        bench.states.append((alone_cfg, alone_state))
        up = bench.launcher(alone_cfg, alone_state, "up", "--detach", "--litellm-url",
                            f"http://127.0.0.1:{provider}", timeout=120)
        launcher["up_detach_litellm_url_s"] = time.time() - started
        if up.returncode != 0:
            raise RuntimeError(f"up --detach --litellm-url failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        alone_pid = json.loads(bench.launcher(alone_cfg, alone_state, "status", "--json").stdout)[
            "processes"]["memory_proxy"]["pid"]

        log("up --detach --mode sdk: the memory proxy with LiteLLM's Router in-process ...")
        started = time.time()
        bench.states.append((sdk_cfg, sdk_state))
        up = bench.launcher(sdk_cfg, sdk_state, "up", "--detach", "--mode", "sdk", python=user_python, timeout=400)
        launcher["up_detach_sdk_s"] = time.time() - started
        if up.returncode != 0:
            raise RuntimeError(f"up --detach --mode sdk failed ({up.returncode}):\n{up.stdout[-3000:]}\n"
                               f"{up.stderr[-3000:]}")
        sdk_pid = json.loads(bench.launcher(sdk_cfg, sdk_state, "status", "--json").stdout)[
            "processes"]["memory_proxy"]["pid"]
        log(f"up --detach --mode sdk took {launcher['up_detach_sdk_s']:.1f} s")
        results["launcher"] = launcher
        proxy_proc = psutil.Process(alone_pid)
        emulator_procs = [psutil.Process(bench.emulator.pid)]
        direct_procs = [psutil.Process(p.pid) for p in bench.direct]
        results["rss_mb"] = {"proxy_after_start": proxy_proc.memory_info().rss / 2**20,
                             "sdk_after_start": tree_rss_mb(sdk_pid),
                             "binary_after_start": tree_rss_mb(ll_pid) + tree_rss_mb(chain_pid)}

        targets = {
            "direct": Target("direct", direct_port, "sk-anything", "plain"),
            "proxy": Target("proxy", alone_port, "sk-anything", "plain"),
            "litellm": Target("litellm", litellm_port, master, "plain"),
            "chain": Target("chain", chain_port, "sk-anything", "plain"),
            "chain_sm": Target("chain_sm", chain_port, "sk-anything", "memory"),
            "sdk": Target("sdk", sdk_port, "sk-anything", "plain"),
            "sdk_sm": Target("sdk_sm", sdk_port, "sk-anything", "memory"),
        }
        slow = {"litellm", "chain", "chain_sm", "sdk", "sdk_sm"}  # LiteLLM inside: fewer requests, longer runs

        log("warming up every path ...")
        for name, t in targets.items():
            r = httpx_latency(t, 30 if name in slow else 300)
            if r["errors"]:
                raise RuntimeError(f"warm-up: {name} answered {r['errors']} errors; see {workdir}")
        bench.settle(provider)

        # --- one client, then 20 and 100 -------------------------------------------------------
        # Round by round, every path in turn; LiteLLM alone and the full chain, whose ratio has the
        # tightest targets, twice and mirrored (L C S C L), so a drift of the machine's load within
        # a round favours neither; SDK mode between the two chains, its order reversed every other
        # round. After each run, wait until LiteLLM has drained its backlog.
        per_round: dict[str, dict[str, list]] = {p: {} for p in PATHS}

        def record(path: str, key: str, value: dict, round_: int) -> None:
            per_round[path].setdefault(key, []).append({**value, "round": round_})

        def order(round_: int) -> tuple[str, ...]:
            first = ("direct", "proxy") if round_ % 2 == 0 else ("proxy", "direct")
            middle = ("chain_sm", "sdk_sm", "sdk") if round_ % 2 == 0 else ("sdk", "sdk_sm", "chain_sm")
            return first + ("litellm", "chain") + middle + ("chain", "litellm")

        fast_s, slow_s = 2.0, 2.0
        runs = len(order(0))
        log(f"one client, {gen.name}: {rounds} round(s) x {runs} runs x {fast_s:g}-{slow_s:g} s ...")
        for r in range(rounds):
            for name in order(r):
                record(name, "c1_gen", gen.run(targets[name], 1, slow_s if name in slow else fast_s), r)
                bench.settle(provider)
        n1 = 300 if quick else 500
        log(f"one client, httpx: {rounds} round(s) x {runs} runs x {n1 // 10}-{n1} requests ...")
        for r in range(rounds):
            for name in order(r):
                record(name, "c1_httpx", httpx_latency(targets[name], n1 // 10 if name in slow else n1), r)
        bench.settle(provider)
        for clients in (20, 100):
            # At 100 clients LiteLLM's answers take seconds (p99 4-8 s here, with stalls): a run
            # shorter than a few of those counts mostly luck (8 s runs of the same path differed by
            # up to 30%, and a round's ratio by as much), so those runs are long.
            fast_s, slow_s = (2.0, 3.0 if clients == 20 else 5.0) if quick else (2.0, 3.0 if clients == 20 else 16.0)
            log(f"{clients} clients: {rounds} round(s) x {runs} runs x {fast_s:g}-{slow_s:g} s ...")
            for r in range(rounds):
                for name in order(r):
                    procs = direct_procs if name == "direct" else emulator_procs
                    emulator_cpu = cpu_s(procs)
                    result = gen.run(targets[name], clients, slow_s if name in slow else fast_s)
                    result["emulator_cpu"] = (cpu_s(procs) - emulator_cpu) / result["seconds"]
                    record(name, f"c{clients}", result, r)
                    bench.settle(provider)

        # --- streaming -------------------------------------------------------------------------------
        streams = 8 if quick else 10
        log(f"streaming: {rounds} round(s) x {len(PATHS)} paths x {streams} streams ...")
        clients_s = {name: StreamClient(t) for name, t in targets.items()}
        stream_samples: dict[str, list[dict]] = {p: [] for p in PATHS}
        for r in range(rounds):
            for name in dict.fromkeys(order(r)):  # each path once per round
                for _ in range(streams):
                    stream_samples[name].append(clients_s[name].once())
                clients_s[name].close()  # servers drop idle connections after 5 s
        for c in clients_s.values():
            c.close()
        n_idle = 20 if quick else 40
        log(f"idle wake-up: {rounds} round(s) x 2 paths x {n_idle} requests back to back and after "
            f"{args.chunk_delay * 1000:g} ms idle ...")
        idle_wake: dict[str, list[dict]] = {"direct": [], "proxy": []}
        for r in range(rounds):
            for name in order(r)[:2]:  # direct and proxy, in this round's order
                idle_wake[name].append(idle_latency(targets[name], n_idle, args.chunk_delay))
        results["idle_wake"] = {"pause_ms": args.chunk_delay * 1000, "requests": n_idle, **idle_wake}
        bench.settle(provider)
        # SDK mode against binary mode after the same load: the SDK process holds LiteLLM too.
        results["rss_mb"].update(sdk_after_load=tree_rss_mb(sdk_pid), litellm_after_load=tree_rss_mb(ll_pid),
                                 chain_proxy_after_load=tree_rss_mb(chain_pid))
        results["rss_mb"]["binary_after_load"] = (results["rss_mb"]["litellm_after_load"]
                                                  + results["rss_mb"]["chain_proxy_after_load"])

        # --- RSS over many requests --------------------------------------------------------------
        n_rss = args.rss_requests or (5000 if quick else 50000)
        rss_before = proxy_proc.memory_info().rss / 2**20
        log(f"memory proxy RSS {rss_before:.1f} MB; sending {n_rss} requests with 20 clients ...")
        done_, runs, samples = 0, [], [rss_before]
        while done_ < n_rss:
            run_ = gen.run(targets["proxy"], 20, 5.0)
            done_ += run_["requests"]
            runs.append(run_)
            samples.append(proxy_proc.memory_info().rss / 2**20)
            bench.settle(provider, quiet=0.2)
        rss_after = samples[-1]
        results["rss_mb"].update(
            proxy_before=rss_before, proxy_after=rss_after, proxy_peak=max(samples), requests=done_,
            samples=[round(x, 1) for x in samples],
            rps_during=sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs),
            errors_during=sum(r["errors"] for r in runs),
            chain_proxy=psutil.Process(chain_pid).memory_info().rss / 2**20)
        log(f"memory proxy RSS after {done_} requests: {rss_after:.1f} MB")
        bench.launcher(chain_cfg, chain_state, "down", timeout=120)  # its own chain, on a calmer machine
        bench.states.remove((chain_cfg, chain_state))
        log("first requests and restarts (scripts/bench_startup.py) ...")
        results["startup"] = bench_startup.run_part(bench, workdir, provider, sm_port, tuple(free_ports(2)))
    finally:
        log("stopping everything ...")
        bench.stop()
        if isinstance(gen, PyLoad):
            gen.close()

    results["paths"] = summarize(per_round, stream_samples, rounds)
    results["targets"] = judge(results, per_round, stream_samples)
    results["sdk_vs_binary"] = compare_modes(results, per_round)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=float))
    print(render(results))
    print(bench_startup.render(results["startup"]))
    print(f"\nJSON: {json_path}")
    return results


def run_startup_only(args: argparse.Namespace) -> dict:
    """``--startup-only``: the emulator and the part "first requests and restarts" alone."""
    workdir = Path(tempfile.mkdtemp(prefix="memory-proxy-bench-"))
    provider, sm_port, port, litellm_port = free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_PROXY_")}
    env.update(BENCH_PROVIDER_KEY="sk-emulator-" + secrets.token_hex(8),
               BENCH_SUPERMEMORY_KEY="sm-emulator-" + secrets.token_hex(8), PYTHONUNBUFFERED="1")
    env.pop("LITELLM_MASTER_KEY", None)
    bench = Bench(args, workdir, env)
    try:
        bench.start_emulator([provider, sm_port], provider, 0)  # no direct path here
        log(f"work folder {workdir}; first requests and restarts (scripts/bench_startup.py) ...")
        part = bench_startup.run_part(bench, workdir, provider, sm_port, (port, litellm_port))
    finally:
        bench.stop()
    json_path = Path(args.json) if args.json else workdir / "benchmark-startup.json"
    json_path.write_text(json.dumps({"machine": machine(), "startup": part}, indent=1, default=float))
    print(bench_startup.render(part))
    print(f"\nJSON: {json_path}")
    return part


# --- figures -----------------------------------------------------------------------------------


def event_offsets(samples: list[dict]) -> list[list[float]]:
    """Per stream: each event's arrival relative to the stream's first event (hop latency removed)."""
    return [[t - s["events"][0] for t in s["events"]] for s in samples if s["events"]]


def chunk_delays(samples: list[dict], reference: list[dict]) -> dict:
    """How much later than on the reference path each chunk reaches the client.

    With the emulator's send stamps (they survive a byte-for-byte relay): per chunk position,
    the median over streams of (arrival - sent), minus the same on the reference path; the
    target is judged on the largest of these (a chunk held back shows up at its position
    in every stream), and the worst single chunk is shown beside the reference's worst, as
    a measure of the machine's noise. Without stamps (LiteLLM re-encodes the chunks): each
    chunk's arrival relative to the stream's first chunk, compared the same way."""
    def stamped(group: list[dict]) -> bool:
        return bool(group) and all(s["transit"] for s in group)

    if stamped(samples) and stamped(reference):
        mine, ref, method = [s["transit"] for s in samples], [s["transit"] for s in reference], "send stamps"
    else:
        mine, ref, method = event_offsets(samples), event_offsets(reference), "relative to the first chunk"
    n = min(min(map(len, mine), default=0), min(map(len, ref), default=0))
    first = 0 if method == "send stamps" else 1
    per_position = [med([o[i] for o in mine]) - med([o[i] for o in ref]) for i in range(first, n)]
    base = med([o[i] for o in ref for i in range(first, n)])
    return {"method": method, "chunks": n, "max_ms": max(per_position, default=float("nan")) * 1000,
            "per_position_ms": [round(x * 1000, 3) for x in per_position],
            "worst_single_ms": (max((o[i] for o in mine for i in range(first, n)), default=float("nan")) - base) * 1000,
            "reference_worst_single_ms": (max((o[i] for o in ref for i in range(first, n)), default=float("nan"))
                                          - base) * 1000}


def summarize(per_round: dict, stream_samples: dict, rounds: int) -> dict:
    out = {}
    for name in PATHS:
        entry = {}
        for key, runs in per_round[name].items():
            entry[key] = {f: med([r[f] for r in runs]) for f in runs[0] if f not in ("seconds", "round")}
            entry[key]["rounds"] = [{k: round(v, 3) for k, v in r.items()} for r in runs]
        samples = stream_samples[name]
        transit = [t for s in samples for t in s["transit"]]
        entry["stream"] = {"streams": len(samples),
                           "chunk_transit_p50_ms": med(transit) * 1000 if transit else None,
                           "first_event_p50_ms": med([s["events"][0] for s in samples if s["events"]]) * 1000,
                           "first_byte_p50_ms": med([s["first_byte"] for s in samples if s["first_byte"]]) * 1000,
                           "events_per_stream": med([len(s["events"]) for s in samples])}
        ref = "direct" if name in ("direct", "proxy") else "litellm"
        if name not in ("direct", "litellm"):
            entry["stream"]["extra_chunk_delay_vs_" + ref] = chunk_delays(samples, stream_samples[ref])
        out[name] = entry
    return out


def round_ratios(per_round: dict, a: str, b: str, key: str, field_: str) -> list[float]:
    """Per round, a/b of the round's medians (runs of one round are a minute apart at most)."""
    rounds = sorted({r["round"] for r in per_round[a][key]} & {r["round"] for r in per_round[b][key]})
    return [med([r[field_] for r in per_round[a][key] if r["round"] == n])
            / med([r[field_] for r in per_round[b][key] if r["round"] == n]) for n in rounds]


def judge(results: dict, per_round: dict, stream_samples: dict) -> list[dict]:
    gen = results["generator_name"]
    paths, launcher, rss = results["paths"], results["launcher"], results["rss_mb"]
    targets = []

    def add(name: str, value: float, limit: float, op: str, unit: str = "x", note: str = "") -> None:
        ok = value <= limit if op == "<=" else value >= limit
        targets.append({"target": name, "value": round(value, 3), "limit": limit, "op": op, "unit": unit,
                        "met": bool(ok and value == value), "note": note})

    def paired(name: str, a: str, b: str, key: str, field_: str, limit: float, op: str) -> None:
        ratios = round_ratios(per_round, a, b, key, field_)
        add(name, med(ratios), limit, op, note="per round: " + ", ".join(f"{x:.2f}" for x in ratios))

    paired("proxy alone, 1 client (httpx client): p50 vs direct", "proxy", "direct", "c1_httpx", "p50_ms", 1.6, "<=")
    paired(f"proxy alone, 1 client ({gen}): p50 vs direct", "proxy", "direct", "c1_gen", "p50_ms", 1.6, "<=")
    paired("proxy alone, 20 clients: throughput vs LiteLLM alone", "proxy", "litellm", "c20", "rps", 20, ">=")
    add("proxy alone, 20 clients: p99 / p50", paths["proxy"]["c20"]["p99_ms"] / paths["proxy"]["c20"]["p50_ms"],
        3, "<=")
    s_proxy, s_direct = paths["proxy"]["stream"], paths["direct"]["stream"]
    wake = results.get("idle_wake")
    why = ""
    if wake:
        def pair(key: str) -> str:
            d, p = med([x[key] for x in wake["direct"]]), med([x[key] for x in wake["proxy"]])
            ratios = ", ".join(f"{b[key] / a[key]:.2f}" for a, b in zip(wake["direct"], wake["proxy"]))
            return f"direct {d:.2f} ms, proxy {p:.2f} ms ({p / d:.2f}x; per round {ratios})"
        why = (f"a non-streamed answer after {wake['pause_ms']:g} ms idle, as a stream's first event comes: "
               f"{pair('idle_ms')}\n             back to back: {pair('warm_ms')}")
    add("streaming, proxy alone: first event vs direct",
        s_proxy["first_event_p50_ms"] / s_direct["first_event_p50_ms"], 1.6, "<=", note=why)
    chunks = s_proxy["extra_chunk_delay_vs_direct"]
    add("streaming, proxy alone: largest extra delay of a chunk", chunks["max_ms"], 1.0, "<=", "ms",
        note=f"per chunk position, median over streams ({chunks['method']}); worst single chunk "
             f"{chunks['worst_single_ms']:.2f} ms vs {chunks['reference_worst_single_ms']:.2f} ms direct")
    paired(f"full chain vs LiteLLM alone: 1-client p50 latency ({gen})", "chain", "litellm", "c1_gen", "p50_ms",
           1.10, "<=")
    for clients in (20, 100):
        paired(f"full chain vs LiteLLM alone: throughput, {clients} clients", "chain", "litellm", f"c{clients}",
               "rps", 0.95, ">=")
    add("memory proxy RSS after the run", rss["proxy_after"], 80, "<=", "MB")
    add(f"memory proxy RSS growth over {rss['requests']} requests",
        (rss["proxy_after"] / rss["proxy_before"] - 1) * 100, 10, "<=", "%")
    add("start_proxies.py status", med(launcher["status_s"]), 0.3, "<=", "s")
    add("start_proxies.py --help", med(launcher["help_s"]), 0.3, "<=", "s")
    if launcher.get("litellm_own_start_s"):
        add("up --detach: healthy after LiteLLM's own start +", launcher["up_detach_s"] - launcher[
            "litellm_own_start_s"], 1.0, "<=", "s")
    fastest = max(max(r["rps"] for r in per_round[p][f"c{c}"]) for p in PATHS if p != "direct" for c in (20, 100))
    direct = max(r["rps"] for c in (20, 100) for r in per_round["direct"][f"c{c}"])
    direct_runs = [r for c in (20, 100) for r in per_round["direct"][f"c{c}"]]
    gen_cpu = [r["generator_cpu"] for r in direct_runs if r.get("generator_cpu") is not None]
    add("generator headroom: direct throughput vs fastest proxied", direct / fastest, 5, ">=",
        note=(f"on the direct path the generator used {med(gen_cpu) * 100:.0f}% of a core and the "
              f"{results['direct_processes']} emulator process(es) together "
              f"{med([r['emulator_cpu'] for r in direct_runs]) * 100:.0f}% (each at most 100%)")
        if gen_cpu else "")
    return targets


def compare_modes(results: dict, per_round: dict) -> list[dict]:
    """SDK mode against binary mode, SDK / binary, for information (the issue sets no target).

    Per path pair (ordinary model: 6 vs 4, Supermemory-backed: 7 vs 5) the median of per-round
    ratios, as for the targets; streaming from the medians over all streams; RSS of the SDK
    process against LiteLLM's plus the full chain's memory proxy; start time of ``up --detach``."""
    paths, rss, launcher = results["paths"], results["rss_mb"], results["launcher"]
    gen = results["generator_name"]
    rows = []

    def add(name: str, values: list[float], better: str, note: str = "") -> None:
        rows.append({"compare": name, "sdk_over_binary": [round(v, 3) for v in values], "better": better,
                     "note": note})

    for label, key, field_, better in ((f"1 client p50 ({gen})", "c1_gen", "p50_ms", "lower"),
                                       ("1 client p50 (httpx client)", "c1_httpx", "p50_ms", "lower"),
                                       ("20 clients: requests/s", "c20", "rps", "higher"),
                                       ("100 clients: requests/s", "c100", "rps", "higher")):
        ratios = [round_ratios(per_round, sdk, binary, key, field_) for sdk, binary in SDK_PAIRS]
        notes = [f"{pair} " + ", ".join(f"{x:.2f}" for x in r) for pair, r in zip(("6/4", "7/5"), ratios)]
        add(label, [med(r) for r in ratios], better, "per round: " + "; ".join(notes))
    add("streaming: first event", [paths[sdk]["stream"]["first_event_p50_ms"]
                                   / paths[binary]["stream"]["first_event_p50_ms"] for sdk, binary in SDK_PAIRS],
        "lower")
    for when in ("after_start", "after_load"):
        add(f"RSS {when.replace('_', ' ')}", [rss[f"sdk_{when}"] / rss[f"binary_{when}"]], "lower",
            f"SDK process {rss[f'sdk_{when}']:.0f} MB vs LiteLLM + memory proxy {rss[f'binary_{when}']:.0f} MB")
    add("up --detach until healthy", [launcher["up_detach_sdk_s"] / launcher["up_detach_s"]], "lower",
        f"--mode sdk {launcher['up_detach_sdk_s']:.1f} s vs binary {launcher['up_detach_s']:.1f} s")
    return rows


def fmt(value, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render(results: dict) -> str:
    m, paths = results["machine"], results["paths"]
    lines = [f"LiteLLM Memory Proxy benchmark: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, "
             f"{m['system']}, load {m['loadavg_at_start'][0]:.2f} at start; {results['generator']}; "
             f"direct path: {results['direct_processes']} emulator process(es) on one port; "
             f"{results['rounds']} interleaved round(s), medians over rounds" + (" (--quick)" if results["quick"]
                                                                                   else "")]
    c1_label = f"1 client, {results['generator_name']}"
    c1_label += " (ms)" if len(c1_label) <= 15 else ""  # "(ms)" as long as the column is wide enough
    head = (f"{'path':27} | {c1_label:^20} | {'1 client, httpx (ms)':^20} | "
            f"{'20 clients':^22} | {'100 clients':^22} | {'streaming (ms)':^22}")
    sub = (f"{'':27} | {'p50':>6} {'p95':>6} {'p99':>6} | {'p50':>6} {'p95':>6} {'p99':>6} | "
           f"{'req/s':>6} {'p50':>7} {'p99':>7} | {'req/s':>6} {'p50':>7} {'p99':>7} | "
           f"{'1st ev':>6} {'extra chunk':>15}")
    lines += ["", head, sub, "-" * len(sub)]
    for name in PATHS:
        p = paths[name]
        c1, h1, c20, c100, st = p["c1_gen"], p["c1_httpx"], p["c20"], p["c100"], p["stream"]
        extra = st.get("extra_chunk_delay_vs_direct") or st.get("extra_chunk_delay_vs_litellm")
        extra_s = f"{extra['max_ms']:+.2f} vs {'direct' if 'extra_chunk_delay_vs_direct' in st else 'LiteLLM'}" \
            if extra else "(reference)"
        lines.append(
            f"{LABELS[name]:27} | {fmt(c1['p50_ms']):>6} {fmt(c1['p95_ms']):>6} {fmt(c1['p99_ms']):>6} | "
            f"{fmt(h1['p50_ms']):>6} {fmt(h1['p95_ms']):>6} {fmt(h1['p99_ms']):>6} | "
            f"{fmt(c20['rps'], 0):>6} {fmt(c20['p50_ms'], 1):>7} {fmt(c20['p99_ms'], 1):>7} | "
            f"{fmt(c100['rps'], 0):>6} {fmt(c100['p50_ms'], 1):>7} {fmt(c100['p99_ms'], 1):>7} | "
            f"{fmt(st['first_event_p50_ms']):>6} {extra_s:>15}")
    errors = [f"{name} {key}: {sum(r.get('errors', 0) for r in runs['rounds'])}" for name in PATHS
              for key, runs in paths[name].items() if key != "stream" and any(r.get("errors") for r in runs["rounds"])]
    lines.append("errors (status >= 400 or socket errors): " + (", ".join(errors) if errors else "none"))
    rss, la = results["rss_mb"], results["launcher"]
    lines += ["", f"memory proxy RSS: {rss['proxy_after_start']:.1f} MB after start, {rss['proxy_before']:.1f} MB "
                  f"before and {rss['proxy_after']:.1f} MB after {rss['requests']} more requests "
                  f"({rss['rps_during']:.0f} req/s, {rss['errors_during']} errors); full chain's proxy "
                  f"{rss['chain_proxy']:.1f} MB",
              f"launcher ({la['python']}): --help {med(la['help_s']):.2f} s, status {med(la['status_s']):.2f} s "
              f"(medians of 5), up --detach {la['up_detach_s']:.1f} s with LiteLLM's own start "
              f"{fmt(la.get('litellm_own_start_s'), 1)} s, up --detach --litellm-url "
              f"{la['up_detach_litellm_url_s']:.1f} s, up --detach --mode sdk {la['up_detach_sdk_s']:.1f} s",
              "", "SDK mode vs binary mode (informative, no target; SDK / binary within this run, "
                  "ordinary model 6/4 and Supermemory-backed 7/5 where two):"]
    for row in results["sdk_vs_binary"]:
        values = " and ".join(f"{v:.2f}x" for v in row["sdk_over_binary"])
        lines.append(f"  {row['compare'] + ':':30} {values:15} ({row['better']} is better for SDK)"
                     + (f"  {row['note']}" if row["note"] else ""))
    lines += ["", "targets (ratios within this run):"]
    for t in results["targets"]:
        unit = "" if t["unit"] == "x" else f" {t['unit']}"
        lines.append(f"  {'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['value']:.2f}{unit} "
                     f"({'at most' if t['op'] == '<=' else 'at least'} {t['limit']:g}{unit})"
                     + (f"\n             {t['note']}" if t["note"] else ""))
    return "\n".join(lines)


STATS_COMMANDS = ([], ["daily"], ["weekly", "--by", "model"], ["monthly", "--by", "provider", "--breakdown"],
                  ["session"], ["daily", "--by", "project", "--json"])


def fill_usage_store(state: Path, records: int, days: int = 30) -> float:
    """``records`` synthetic usage records over ``days`` through the writer's own upsert (the
    rollup included), shaped like a busy installation: 10 clients, 4 models, Claude Code
    sessions of two hours. Returns the seconds the writer took."""
    import random

    from memory_proxy.usage.record import derive
    from memory_proxy.usage.store import SqliteStore

    store = SqliteStore(state / "usage.sqlite3")
    rnd = random.Random(17)
    now = int(time.time() * 1000)
    clients = ["claude-cli", "pycharm-ai", "openai-python", "proj-a", "proj-b", "curl", "default-dev", "ci-1",
               "ci-2", "notebook"]
    models = ["gpt-4o-mini", "claude-sonnet-4-5", "memory/gpt-4o-mini", "claude-3-5-haiku-latest"]
    started = time.perf_counter()
    batch = []
    for i in range(records):
        client, model = rnd.choice(clients), rnd.choice(models)
        ts = now - rnd.randrange(days * 86_400_000)
        latency = rnd.lognormvariate(6, 1)
        streamed = rnd.random() < 0.6
        batch.append(derive({
            "request_id": f"{i:032x}", "ts_ms": ts, "client_id": client,
            "client_source": "scope_path" if client.startswith("proj") else "pattern", "method": "POST",
            "path": "/v1/messages" if "claude" in model else "/v1/chat/completions", "model_group": model,
            "deployment": model, "provider": "anthropic" if "claude" in model else "openai",
            "status": 200 if rnd.random() > 0.03 else 500, "completed": 1, "streamed": int(streamed),
            "latency_ms": latency, "ttfb_ms": latency * 0.3, "first_event_ms": latency * 0.3 if streamed else None,
            "input_tokens": rnd.randrange(2000), "output_tokens": rnd.randrange(800),
            "cache_read_tokens": rnd.randrange(5000), "cache_write_tokens": rnd.randrange(300),
            "cost_usd": rnd.random() / 100, "priced": int("haiku" not in model),
            "sm_error": "x" if rnd.random() < 0.01 else None, "sm_context_modified": int(rnd.random() < 0.5),
            "cf_retries": 0, "session_id": f"{client}-{ts // 7_200_000}" if client == "claude-cli" else None,
        }, frozenset({"memory/gpt-4o-mini"})))
        if len(batch) == 5000:  # the writer's largest batch
            store.upsert(batch)
            batch = []
    if batch:
        store.upsert(batch)
    store.close()
    return time.perf_counter() - started


def run_stats_part(args: argparse.Namespace) -> dict:
    """``--part stats``: ``start_proxies.py stats`` over a store of ``--stats-records`` records."""
    root = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    state = root / "state"
    state.mkdir()
    config = root / "config.yaml"
    config.write_text("model_list: []\n")
    log(f"writing {args.stats_records:,} usage records (the writer's upsert and rollup) into {state}")
    fill_s = fill_usage_store(state, args.stats_records)
    size_mb = (state / "usage.sqlite3").stat().st_size / 1e6
    log(f"  {fill_s:.1f} s ({args.stats_records / fill_s:,.0f} records/s), {size_mb:.0f} MB")
    python = os.environ.get("BENCH_USER_PYTHON") or sys.executable
    rows = []
    for extra in STATS_COMMANDS:
        argv = [python, str(ROOT / "start_proxies.py"), "--config", str(config), "--state-dir", str(state),
                "stats", *extra]
        times, cpu = [], []
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            times.append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                raise SystemExit(f"stats {' '.join(extra)} failed: {done.stderr[-500:]}")
        rows.append({"command": " ".join(["stats", *extra]), "median_s": round(med(times), 3),
                     "max_s": round(max(times), 3), "cpu_median_s": round(med(cpu), 3)})
    results = {"records": args.stats_records, "fill_s": round(fill_s, 1), "store_mb": round(size_mb),
               "stats": rows, "target_s": 1.0, "machine": machine()}
    width = max(len(r["command"]) for r in rows)
    print(f"\nstats over {args.stats_records:,} records ({size_mb:.0f} MB store); target: under 1 s each "
          f"(wall time; the CPU time beside it shows what a busy machine added)")
    for r in rows:
        mark = "ok" if r["median_s"] < 1.0 else "OVER"
        print(f"  {r['command']:<{width}}  median {r['median_s']:.3f} s  max {r['max_s']:.3f} s  "
              f"(CPU {r['cpu_median_s']:.3f} s)  {mark}")
    out = Path(args.json) if args.json else root / "benchmark-stats.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"figures: {out}")
    shutil.rmtree(state, ignore_errors=True)
    return results


def run_usage_overhead_part(args: argparse.Namespace) -> dict:
    """``--part usage``: the memory proxy alone in front of the emulator, twice (the usage record
    on, and ``memory_proxy.usage.enabled: false``), wrk at 1 and 20 clients, interleaved round by
    round; the ratios on/off of requests/s and p50."""
    workdir = Path(tempfile.mkdtemp(prefix="memory-proxy-bench-usage-"))
    provider, supermemory, on_port, off_port, unused = free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_PROXY_")}
    env.update(LITELLM_MASTER_KEY="sk-bench-" + secrets.token_urlsafe(24), PYTHONUNBUFFERED="1",
               BENCH_PROVIDER_KEY="sk-emulator-x", BENCH_SUPERMEMORY_KEY="sm-emulator-x")
    bench = Bench(args, workdir, env)
    wrk_binary = shutil.which("wrk")
    if not wrk_binary:
        sys.exit(f"--part usage needs wrk: {WRK_INSTALL}")
    gen = Wrk(wrk_binary, workdir)
    rounds = args.rounds or (2 if args.quick else 4)
    per: dict[str, dict[str, list]] = {"on": {}, "off": {}}
    try:
        bench.start_emulator([provider, supermemory], provider, 0)  # no direct-path processes
        for name, port in (("on", on_port), ("off", off_port)):
            config, state = workdir / f"{name}.yaml", workdir / f"state-{name}"
            write_config(config, port=port, litellm_port=unused, provider=provider, supermemory=supermemory)
            if name == "off":
                config.write_text(config.read_text().replace("memory_proxy:\n", "memory_proxy:\n  usage:\n"
                                                             "    enabled: false\n", 1))
            bench.states.append((config, state))
            up = bench.launcher(config, state, "up", "--detach", "--litellm-url", f"http://127.0.0.1:{provider}",
                                timeout=120)
            if up.returncode != 0:
                raise RuntimeError(f"up --detach --litellm-url failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
        targets = {"on": Target("on", on_port, "sk-anything", "plain"),
                   "off": Target("off", off_port, "sk-anything", "plain")}
        for t in targets.values():
            httpx_latency(t, 300)
        bench.settle(provider)
        log(f"usage record on/off: {rounds} rounds x (1 and 20 clients) x 2 proxies x 3 s ...")
        for r in range(rounds):
            for clients in (1, 20):
                for name in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    per[name].setdefault(f"c{clients}", []).append(gen.run(targets[name], clients, 3.0))
                    bench.settle(provider)
        written = httpx.get(f"http://127.0.0.1:{on_port}/health", timeout=5).json()["memory_proxy"]["usage"]
    finally:
        bench.stop()
    results: dict = {"rounds": rounds, "generator": gen.version, "machine": machine(), "usage_on": written}
    print(f"\nthe memory proxy alone, usage record on vs off ({gen.version}, {rounds} rounds, medians)")
    for clients in (1, 20):
        key = f"c{clients}"
        on_rps, off_rps = (med([x["rps"] for x in per[n][key]]) for n in ("on", "off"))
        on_p50, off_p50 = (med([x["p50_ms"] for x in per[n][key]]) for n in ("on", "off"))
        results[key] = {"on_rps": on_rps, "off_rps": off_rps, "rps_ratio": on_rps / off_rps,
                        "on_p50_ms": on_p50, "off_p50_ms": off_p50, "p50_ratio": on_p50 / off_p50}
        print(f"  {clients:>2} client(s): {on_rps:,.0f} vs {off_rps:,.0f} req/s (on/off {on_rps / off_rps:.3f}), "
              f"p50 {on_p50:.2f} vs {off_p50:.2f} ms (on/off {on_p50 / off_p50:.3f}); target: within 5 %")
    print(f"  records written by the proxy with the record on: {written.get('written')}, dropped "
          f"{written.get('dropped')}")
    out = Path(args.json) if args.json else workdir / "benchmark-usage.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"figures: {out}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 scripts/benchmark.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="one round, fewer requests (about 2-3 minutes)")
    parser.add_argument("--json", metavar="PATH", help="where to write the figures (default: the run's tmp folder)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, --quick 1)")
    parser.add_argument("--rss-requests", type=int, default=None,
                        help="requests between the two RSS readings (default 50000, --quick 5000)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between streamed chunks")
    parser.add_argument("--chunks", type=int, default=8, help="content chunks per streamed answer")
    parser.add_argument("--direct-processes", type=int, default=None,
                        help="emulator processes serving the direct path (default: one per core)")
    parser.add_argument("--part", choices=("proxies", "startup", "stats", "usage"), default="proxies",
                        help="proxies: the hops above (default, then the startup part too); startup: only the "
                             "part 'first requests and restarts' (scripts/bench_startup.py, about 2 minutes); "
                             "stats: `start_proxies.py stats` over a large usage store (starts nothing); usage: "
                             "the memory proxy alone with the usage record on and off")
    parser.add_argument("--startup-only", action="store_true", help="the same as --part startup")
    parser.add_argument("--stats-records", type=int, default=1_000_000, help="records for --part stats")
    args = parser.parse_args()
    try:
        if args.part == "stats":
            run_stats_part(args)
            return 0
        if args.part == "usage":
            run_usage_overhead_part(args)
            return 0
        run_startup_only(args) if args.startup_only or args.part == "startup" else run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
