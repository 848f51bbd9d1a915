"""``up`` when something cannot start: it says exactly why and leaves nothing running (no
process, no port, no record of a running instance)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.ports import port_taken
from tests.support.stacks import cli_env

from .conftest import KEYS, fault, make_stack, seen

FAKE_EXIT = """#!/bin/sh
echo "fake litellm: cannot load the config: something is wrong at line 7" >&2
exit 3
"""
FAKE_HANG = """#!/bin/sh
echo "fake litellm: starting, and never listening"
exec sleep 600
"""
# Dies of a segfault in native code, as an extension module's bug would.
FAKE_SEGV = f"""#!{sys.executable}
import ctypes
def load_config():
    ctypes.string_at(0)
load_config()
"""
# Serves LiteLLM's health probes, but first takes the memory proxy's port.
FAKE_GRAB = f"""#!{sys.executable}
import http.server, os, socket, sys
grab = socket.socket()
grab.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
grab.bind(("127.0.0.1", int(os.environ["FAKE_GRAB_PORT"])))
grab.listen()
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{{"status": "healthy"}}')
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def fake_binary(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def processes_mentioning(*texts: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if any(t in cmdline for t in texts) and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmdline[:200]}")
    return found


@pytest.fixture
def failing(tmp_path, emu):
    return make_stack(tmp_path / "failing", emu)


def assert_nothing_left(st, *also: str) -> None:
    deadline = time.monotonic() + 10
    while processes_mentioning(str(st.state), *also) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(str(st.state), *also), processes_mentioning(str(st.state), *also)
    assert not port_taken(st.proxy_port), f"port {st.proxy_port} is still taken"
    assert not port_taken(st.litellm_port), f"port {st.litellm_port} is still taken"
    status = json.loads(st.cli("status", "--json", timeout=60).stdout)
    assert status["running"] is False, status


def up_fails(st, *args: str, code: int = 1, env: dict | None = None) -> str:
    started = time.monotonic()
    result = st.cli("up", "--detach", *args, env=env, timeout=240)
    took = time.monotonic() - started
    seen("up failure", result.stdout + result.stderr)
    assert result.returncode == code, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr + f"\n(took {took:.1f} s)"


def test_a_taken_memory_proxy_port_names_its_holder(failing):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", failing.proxy_port))
        holder.listen()
        said = up_fails(failing)
        expected = f"port {failing.proxy_port} (memory proxy, memory_proxy.port) is taken by pid {os.getpid()}"
        assert expected in said, said
        foreground = failing.cli("up", timeout=120)
        assert foreground.returncode == 1 and f"taken by pid {os.getpid()}" in foreground.stderr
    assert_nothing_left(failing)
    fault("up: memory proxy port taken")


def test_a_taken_litellm_port_names_its_holder(failing):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", failing.litellm_port))
        holder.listen()
        said = up_fails(failing)
        assert f"port {failing.litellm_port} (LiteLLM, memory_proxy.litellm_port) is taken by pid {os.getpid()}" in said
    assert_nothing_left(failing)
    fault("up: LiteLLM port taken")


def test_an_address_this_machine_lacks_is_named_not_called_taken(failing):
    text = failing.config.read_text().replace(
        "memory_proxy:\n", "memory_proxy:\n  host: 192.0.2.10\n  api_keys: [os.environ/FAULTS_FRONT_KEY]\n", 1)
    failing.config.write_text(text)
    said = up_fails(failing, env=cli_env(**KEYS, FAULTS_FRONT_KEY="front-door-key-for-this-test"))
    assert f"cannot listen on 192.0.2.10:{failing.proxy_port}" in said and "assign" in said.lower(), said
    assert "taken" not in said
    assert_nothing_left(failing)
    fault("up: memory proxy host not on this machine")


def test_a_broken_config_names_the_key_and_the_line(failing):
    text = failing.config.read_text().replace("  litellm_port:", "  litellm_port: eighty\n  old_litellm_port:")
    failing.config.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "litellm_port: eighty" in t)
    said = up_fails(failing, code=2)
    assert f"{failing.config}:{line}: memory_proxy.litellm_port: must be an integer" in said, said
    assert "memory_proxy.old_litellm_port: unknown key" in said
    assert not (failing.state / "litellm_config.generated.yaml").exists()
    assert_nothing_left(failing)
    fault("up: broken config")


def test_a_missing_litellm_binary(failing, tmp_path):
    missing = tmp_path / "no" / "litellm"
    said = up_fails(failing, env=cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(missing)))
    assert f"MEMORY_PROXY_LITELLM={missing} is not an executable file" in said, said
    not_executable = tmp_path / "litellm-not-executable"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(stat.S_IRUSR | stat.S_IWUSR)
    said = up_fails(failing, env=cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(not_executable)))
    assert f"MEMORY_PROXY_LITELLM={not_executable} is not an executable file" in said, said
    assert_nothing_left(failing)
    fault("up: LiteLLM binary missing or not executable")


def test_litellm_exiting_at_start_shows_its_last_words(failing, tmp_path):
    binary = fake_binary(tmp_path, "litellm-exits", FAKE_EXIT)
    env = cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(binary))
    said = up_fails(failing, env=env)
    assert "litellm exited during startup (exit code 3)" in said, said
    assert "fake litellm: cannot load the config: something is wrong at line 7" in said
    foreground = failing.cli("up", env=env, timeout=120)
    assert foreground.returncode == 1 and "exit code 3" in foreground.stderr, foreground.stderr
    assert "something is wrong at line 7" in foreground.stderr
    assert_nothing_left(failing, str(binary))
    fault("up: LiteLLM exits during startup")


def test_litellm_crashing_in_native_code_leaves_its_python_stack(failing, tmp_path):
    binary = fake_binary(tmp_path, "litellm-segfaults", FAKE_SEGV)
    said = up_fails(failing, env=cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(binary)))
    assert "litellm exited during startup (signal SIGSEGV, a crash: its log has the Python stack" in said, said
    assert "Fatal Python error: Segmentation fault" in said  # the tail of its log: faulthandler's dump
    assert "in load_config" in said
    assert_nothing_left(failing, str(binary))
    fault("up: LiteLLM crashes in native code (its Python stack logged)")


def test_litellm_never_ready_is_given_up_on_and_killed(failing, tmp_path):
    binary = fake_binary(tmp_path, "litellm-hangs", FAKE_HANG)
    said = up_fails(failing, "--timeout", "4", env=cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(binary)))
    assert "litellm did not answer /health/liveliness with 200 in time" in said, said
    assert "never listening" in said  # the tail of its log
    assert_nothing_left(failing, str(binary))
    fault("up: LiteLLM never becomes ready")


def test_the_memory_proxy_failing_to_start_is_reported_and_litellm_stopped(failing, tmp_path):
    binary = fake_binary(tmp_path, "litellm-grabs", FAKE_GRAB)
    env = cli_env(**KEYS, MEMORY_PROXY_LITELLM=str(binary), FAKE_GRAB_PORT=str(failing.proxy_port))
    said = up_fails(failing, env=env)
    assert "memory_proxy exited during startup" in said, said
    assert "address already in use" in said.lower(), said
    assert_nothing_left(failing, str(binary))
    fault("up: the memory proxy fails to start (LiteLLM stopped again)")


def test_an_unusable_state_folder_is_named(failing):
    failing.state.mkdir(parents=True)
    (failing.state / "litellm_master_key").mkdir()
    said = up_fails(failing)
    assert "litellm_master_key" in said and "Is a directory" in said, said
    assert_nothing_left(failing)
    fault("up: unusable state folder")
