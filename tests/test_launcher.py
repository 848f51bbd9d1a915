"""The launcher without LiteLLM: its CLI answers, pid records, restarts with back-off, and
what ``down`` may and may not signal. The full chain with the real binary is in tests/e2e."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from memory_proxy.launcher.record import RECORD_VERSION, live_process, read_record, write_record
from memory_proxy.launcher.status import stop_recorded
from memory_proxy.launcher.supervisor import BACKOFF_FIRST, Child, Supervisor
from memory_proxy.state import StateDir
from tests.support import ROOT
from tests.support.configs import launcher_config
from tests.support.ports import free_port, port_taken
from tests.support.readiness import until


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(launcher_config(free_port(), free_port()))
    return path


def cli(tmp_path: Path, config: Path, *args: str, timeout: float = 60, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LAUNCHER_TEST_KEY", "MEMORY_PROXY_STATE_DIR", "MEMORY_PROXY_LITELLM")}
    env["MEMORY_PROXY_VENV"] = sys.prefix  # this interpreter has every dependency: no .venv is created
    env.update(env_extra)
    return subprocess.run([sys.executable, str(ROOT / "start_proxies.py"), "--config", str(config),
                           "--state-dir", str(tmp_path / "state"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


def test_help_and_status_answer_quickly_without_litellm(tmp_path, config):
    started = time.monotonic()
    result = cli(tmp_path, config, "--help")
    assert result.returncode == 0
    for command in ("up", "status", "down", "logs", "check", "route"):
        assert command in result.stdout
    status = cli(tmp_path, config, "status", "--json")
    elapsed = time.monotonic() - started
    assert status.returncode == 1  # nothing runs
    data = json.loads(status.stdout)
    assert data["running"] is False and data["healthy"] is False
    assert data["models_missing_keys"] == {"plain": ["LAUNCHER_TEST_KEY"]}
    assert elapsed < 5, f"--help and status took {elapsed:.1f} s"


# The launcher's import rule (docs/architecture.md): at import time its modules use only the
# standard library, psutil, typer/rich and the shared config, names and state modules, so
# `status` and `--help` never load LiteLLM, Starlette, httpx or uvicorn. What a command needs
# beyond that it imports inside the command.
# annotated_doc: typer's own.
LAUNCHER_MAY_IMPORT = {"psutil", "typer", "click", "rich", "yaml", "shellingham", "annotated_doc"}
LAUNCHER_MAY_USE = ("memory_proxy.launcher", "memory_proxy.config", "memory_proxy.names", "memory_proxy.state")


def test_launcher_imports_only_what_its_rule_allows():
    script = ("import importlib, json, pkgutil, sys; import memory_proxy.launcher as launcher\n"
              "before = set(sys.modules)\n"
              "for m in pkgutil.iter_modules(launcher.__path__):\n"
              "    importlib.import_module(launcher.__name__ + '.' + m.name)\n"
              "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                                       check=True).stdout)
    assert len([m for m in loaded if m.startswith("memory_proxy.launcher.")]) >= 10  # it did import them all
    third_party = {m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names) - {"memory_proxy"}
    assert third_party <= LAUNCHER_MAY_IMPORT, f"the launcher imports {sorted(third_party - LAUNCHER_MAY_IMPORT)}"
    ours = [m for m in loaded if m.startswith("memory_proxy.")]
    assert [m for m in ours if not m.startswith(LAUNCHER_MAY_USE)] == []


def test_route_explains_the_id(tmp_path, config):
    result = cli(tmp_path, config, "route", "--user-agent", "claude-cli/2.0.14 (external, cli)", "--json")
    assert json.loads(result.stdout)["user_id"] == "claude-cli"
    result = cli(tmp_path, config, "route", "-A", "claude-cli/2", "-H", "x-memory-user-id: my-project",
                 "-H", "x-sm-user-id: victim")
    assert result.returncode == 0 and "my-project" in result.stdout and "x-sm-user-id" in result.stdout
    result = cli(tmp_path, config, "route", "--path", "/scope/team-a/v1/chat/completions", "--json")
    data = json.loads(result.stdout)
    assert (data["user_id"], data["source"], data["path"]) == ("team-a", "scope_path", "/v1/chat/completions")
    result = cli(tmp_path, config, "route", "-H", "x-memory-user-id: bad id!")
    assert result.returncode == 2 and "invalid client id" in result.stderr
    schema = json.loads(cli(tmp_path, config, "schema").stdout)
    assert "memory_proxy" in schema["properties"]


def test_up_refuses_a_taken_port_and_names_the_holder(tmp_path, config):
    port = int(config.read_text().split("port: ")[1].split()[0])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        result = cli(tmp_path, config, "up", "--detach")
        assert result.returncode == 1
        assert f"port {port}" in result.stderr and f"pid {os.getpid()}" in result.stderr, result.stderr
        assert not (tmp_path / "state" / "processes.json").exists()
        down = cli(tmp_path, config, "down")  # no record: the port is not this state folder's to free
        assert down.returncode == 1 and "Nothing was running" in down.stdout
        assert f"port {port} is still taken by" in down.stderr and f"pid {os.getpid()}" in down.stderr
        assert "nothing recorded in" in down.stderr, down.stderr
    down = cli(tmp_path, config, "down")
    assert down.returncode == 0 and "Nothing was running" in down.stdout


def test_logs_shows_the_tail(tmp_path, config):
    log = StateDir(tmp_path / "state").log_file("litellm")
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    result = cli(tmp_path, config, "logs", "litellm", "-n", "3")
    assert result.stdout.splitlines() == ["line 97", "line 98", "line 99"]
    result = cli(tmp_path, config, "logs")
    assert "[litellm]" in result.stdout and "line 99" in result.stdout


def fake_litellm(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-litellm"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def leftovers(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if text in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
            found.append(" ".join(proc.info["cmdline"]))
    return found


def test_litellm_exiting_early_fails_up_with_its_log_and_leaves_nothing(tmp_path, config):
    binary = fake_litellm(tmp_path, 'echo "ImportError: something is broken in the venv"; exit 1')
    result = cli(tmp_path, config, "up", "--detach", MEMORY_PROXY_LITELLM=str(binary))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "litellm exited during startup (exit code 1)" in result.stderr
    assert "ImportError: something is broken in the venv" in result.stderr
    assert not (tmp_path / "state" / "processes.json").exists()
    assert not leftovers(str(tmp_path / "state"))


def test_litellm_never_ready_times_out_and_is_killed(tmp_path, config):
    binary = fake_litellm(tmp_path, 'echo "still importing..."; sleep 313')  # a child in its group
    result = cli(tmp_path, config, "up", "--timeout", "1.5", MEMORY_PROXY_LITELLM=str(binary))  # foreground
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did not answer /health/liveliness" in result.stderr and "still importing..." in result.stderr
    assert not leftovers(str(tmp_path / "state")) and not leftovers("sleep 313")
    check = cli(tmp_path, config, "check", MEMORY_PROXY_LITELLM=str(tmp_path / "missing"))
    assert check.returncode == 1 and "MEMORY_PROXY_LITELLM" in check.stderr


def sleeper(seconds: float = 60) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)


def test_records_are_checked_by_creation_time(tmp_path):
    proc = sleeper()
    try:
        created = psutil.Process(proc.pid).create_time()
        assert live_process({"pid": proc.pid, "create_time": created}) is not None
        assert live_process({"pid": proc.pid, "create_time": created + 100}) is None  # a recycled pid
        state = StateDir(tmp_path)
        write_record(state, {"version": RECORD_VERSION, "processes": {
            "litellm": {"pid": proc.pid, "create_time": created + 100, "port": None}}})
        report = stop_recorded(state, grace=1)
        assert report.nothing and proc.poll() is None, "down must not signal a pid that was reused"
        assert not state.processes.exists()
        write_record(state, {"version": RECORD_VERSION, "processes": {
            "litellm": {"pid": proc.pid, "create_time": created, "port": None}}})
        report = stop_recorded(state, grace=1)
        proc.wait(timeout=10)  # (already reaped by psutil.wait_procs: this process is its parent)
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert report.stopped == [f"litellm (pid {proc.pid})"]
    finally:
        if proc.poll() is None:
            proc.kill()


def dead_child(tmp_path: Path) -> tuple[Supervisor, Child]:
    """A supervisor and its child "litellm", started and already exited (exit code 3)."""
    sup = Supervisor(tmp_path / "config.yaml", StateDir(tmp_path).ensure())
    closed = f"http://127.0.0.1:{free_port()}/health"
    child = Child("litellm", [sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ), tmp_path,
                  1, closed, closed)
    sup.children["litellm"] = child
    sup._spawn(child)
    child.proc.wait(timeout=10)
    return sup, child


def test_a_dead_child_is_restarted_with_back_off(tmp_path):
    sup, child = dead_child(tmp_path)
    sup._watch(child)
    assert child.proc is None and child.restart_at is not None and child.backoff == 2 * BACKOFF_FIRST
    record = read_record(sup.state)
    assert record["processes"]["litellm"]["pid"] is None and record["processes"]["litellm"]["restarting"]
    child.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    child.restart_at = time.monotonic()
    sup._watch(child)
    try:
        assert child.proc is not None and child.proc.poll() is None and child.restarts == 1
        assert read_record(sup.state)["processes"]["litellm"]["pid"] == child.proc.pid
        log = sup.state.log_file("supervisor").read_text()
        assert "exited (exit code 3)" in log and "restarting in 1 s" in log and "restarted (pid" in log
    finally:
        sup.shutdown()
    assert child.proc.poll() is not None


def test_how_long_a_child_ran_does_not_follow_the_wall_clock(tmp_path):
    """The wall clock set back an hour (NTP, a resumed laptop) while a child ran two minutes: it
    ran long enough to restart with the first back-off, and the log says two minutes."""
    sup, child = dead_child(tmp_path)
    child.backoff = 8 * BACKOFF_FIRST
    child.started_at += 3600  # started "in the future" by the clock now
    child.started_mono -= 120
    sup._watch(child)
    assert child.backoff == 2 * BACKOFF_FIRST
    assert "exited (exit code 3) after 120 s; restarting in 1 s" in sup.state.log_file("supervisor").read_text()


def test_a_record_that_cannot_be_written_neither_stops_the_supervisor_nor_a_restart(tmp_path):
    """A full disk while a child dies: the supervisor keeps watching, restarts the child, and
    writes the record again once it can (it used to crash and stop everything)."""
    sup, child = dead_child(tmp_path)
    sup.record_state = "running"
    sup.state.processes.unlink()
    (sup.state.processes / "in-the-way").mkdir(parents=True)  # the record's rename fails, as on a full disk
    sup.tick()
    assert child.proc is None and child.restart_at is not None and sup.record_stale
    child.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    child.restart_at = time.monotonic()
    try:
        sup.tick()
        assert child.proc is not None and child.proc.poll() is None and child.restarts == 1
        shutil.rmtree(sup.state.processes)
        sup.tick()
        assert not sup.record_stale
        assert read_record(sup.state)["processes"]["litellm"]["pid"] == child.proc.pid
        log = sup.state.log_file("supervisor").read_text()
        assert "cannot write" in log and "is written again" in log
    finally:
        sup.shutdown()
    assert child.proc.poll() is not None


def test_the_logs_of_running_children_are_rotated(tmp_path):
    """A proxy left running for weeks: its log is rotated while it runs, not only when it starts."""
    sup = Supervisor(tmp_path / "config.yaml", StateDir(tmp_path).ensure(), log_rotate_bytes=1000)
    go_on = tmp_path / "go-on"
    writes = (f"import os, sys, time; sys.stdout.write('a' * 2000 + chr(10)); sys.stdout.flush()\n"
              f"while not os.path.exists({str(go_on)!r}): time.sleep(0.01)\n"
              "sys.stdout.write('b' * 10 + chr(10)); sys.stdout.flush(); time.sleep(60)")
    closed = f"http://127.0.0.1:{free_port()}/health"
    child = sup.children["memory_proxy"] = Child("memory_proxy", [sys.executable, "-c", writes], dict(os.environ),
                                                 tmp_path, 1, closed, closed)
    sup._spawn(child)
    log = sup.state.process_log("memory_proxy")
    try:
        until(lambda: "a" * 2000 in log.read_text(), "the child's first line")
        sup.tick()
        assert "a" * 2000 in log.with_name(log.name + ".1").read_text()
        go_on.touch()
        until(lambda: log.read_text() == "b" * 10 + "\n", "the child's next line, alone in the log")
    finally:
        sup.shutdown()


def ports_of(config: Path) -> tuple[int, int]:
    text = config.read_text()
    return int(text.split("  port: ")[1].split()[0]), int(text.split("litellm_port: ")[1].split()[0])


def http_server(port: int) -> subprocess.Popen:
    """A child holding ``port`` in its own session, as LiteLLM and the memory proxy run."""
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not port_taken(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_children_left_by_a_killed_supervisor_are_reported_refused_and_stopped(tmp_path, config):
    memory_port, litellm_port = ports_of(config)
    dead = sleeper()
    supervisor = {"pid": dead.pid, "create_time": psutil.Process(dead.pid).create_time()}
    dead.kill()
    dead.wait()
    children = {"memory_proxy": http_server(memory_port), "litellm": http_server(litellm_port)}
    try:
        entries = {name: {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": port}
                   for (name, proc), port in zip(children.items(), (memory_port, litellm_port), strict=True)}
        write_record(StateDir(tmp_path / "state"), {
            "version": RECORD_VERSION, "state": "running", "memory_proxy_url": f"http://127.0.0.1:{memory_port}",
            "processes": {"supervisor": supervisor, **entries}})
        status = cli(tmp_path, config, "status", "--json")
        data = json.loads(status.stdout)
        assert status.returncode == 1 and data["state"] == "orphaned" and data["running"] is True
        assert data["processes"]["litellm"]["pid"] == children["litellm"].pid
        assert not data["processes"]["supervisor"]["running"]
        assert any("supervisor is gone" in p and " down" in p for p in data["problems"]), data["problems"]
        up = cli(tmp_path, config, "up", "--detach")
        assert up.returncode == 1 and "supervisor" in up.stderr and " down` first" in up.stderr, up.stderr
        assert (tmp_path / "state" / "processes.json").exists(), "up must keep the record of live children"
        down = cli(tmp_path, config, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"litellm (pid {children['litellm'].pid})" in down.stdout
        for proc in children.values():
            assert proc.wait(10) is not None
        assert not port_taken(memory_port) and not port_taken(litellm_port)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("text", ['{"version": 1, "processes": []}', '{"version": 1, "processes": {"litellm": "x"}}',
                                  '{"version": 1, "proc', "garbage"])
def test_an_unreadable_record_is_reported_and_down_checks_the_configured_ports(tmp_path, config, text):
    memory_port, _ = ports_of(config)
    record = tmp_path / "state" / "processes.json"
    record.parent.mkdir()
    record.write_text(text)
    up = cli(tmp_path, config, "up", "--detach")
    assert up.returncode == 1 and "process record" in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert len(up.stderr.strip().splitlines()) == 1
    holder = http_server(memory_port)  # what runs while the record cannot say
    try:
        down = cli(tmp_path, config, "down", "--json")
        data = json.loads(down.stdout)
        assert down.returncode == 1 and data["ok"] is False and "process record" in data["unreadable"]
        assert data["ports_busy"] == [f"port {memory_port} is still taken by pid {holder.pid} "
                                      f"({sys.executable} -m http.server {memory_port} --bind 127.0.0.1)"]
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "state" / "processes.json.unreadable").read_text() == text  # kept, out of the way
    assert cli(tmp_path, config, "down").returncode == 0  # and the next `down` finds nothing


@pytest.mark.parametrize(("args", "message"), [
    (["--sdk-port", "70000"], "--sdk-port 70000 is not a port"),
    (["--sdk-port", "0", "--backend", "both"], "--sdk-port 0 is not a port"),
    (["--sdk-port", "{memory}", "--backend", "both"], "--sdk-port {memory} is memory_proxy.port too"),
    (["--sdk-port", "{litellm}", "--backend", "both"], "--sdk-port {litellm} is memory_proxy.litellm_port too"),
    (["--timeout", "-5"], "--timeout must be a positive number of seconds, not -5"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds, not nan"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
    (["--litellm-url", "http://127.0.0.1:9"], "--litellm-url needs LITELLM_MASTER_KEY"),
])
def test_up_refuses_bad_options_before_starting_anything(tmp_path, config, args, message):
    memory_port, litellm_port = ports_of(config)
    args = [a.format(memory=memory_port, litellm=litellm_port) for a in args]
    result = cli(tmp_path, config, "up", "--detach", *args, LITELLM_MASTER_KEY="")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("✘ " + message.format(memory=memory_port, litellm=litellm_port)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "logs" / "supervisor.log").exists()


def test_an_unusable_state_folder_is_named(tmp_path, config):
    (tmp_path / "file").write_text("")
    for state in (tmp_path / "file", tmp_path / "file" / "below", Path("/proc/no-state-here")):
        result = subprocess.run([sys.executable, str(ROOT / "start_proxies.py"), "--config", str(config),
                                 "--state-dir", str(state), "up"], capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, MEMORY_PROXY_VENV=sys.prefix))
        assert result.returncode == 2 and str(state) in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logs").write_text("")  # a file where the logs folder belongs
    for command in (["up"], ["logs"]):
        result = cli(tmp_path, config, *command)
        assert result.returncode == 2 and str(tmp_path / "state" / "logs") in result.stderr, result.stderr
    doctor = json.loads(cli(tmp_path, config, "doctor", "--json").stdout)
    assert doctor["ok"] is False
    assert [c["level"] for c in doctor["checks"] if c["area"] == "state"] == ["fail"]


def test_logs_lines_zero_negative_and_none_yet(tmp_path, config):
    missing = cli(tmp_path, config, "logs", "litellm")
    assert missing.returncode == 0 and missing.stdout == ""
    assert f"no log yet at {tmp_path / 'state' / 'logs' / 'litellm.log'}" in missing.stderr
    assert "no log yet at" in cli(tmp_path, config, "logs").stderr
    log = StateDir(tmp_path / "state").ensure().log_file("litellm")
    log.write_text("".join(f"line {i}\n" for i in range(5)))
    assert cli(tmp_path, config, "logs", "litellm", "-n", "0").stdout == ""
    negative = cli(tmp_path, config, "logs", "litellm", "-n", "-2")
    assert negative.returncode == 2 and negative.stdout == "" and "-n" in negative.stderr
