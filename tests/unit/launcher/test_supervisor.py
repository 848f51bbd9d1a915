"""The supervisor before it starts anything: the remembered backend, and which ports its
preflight checks for each backend; what LiteLLM is told to leave out of its log; how it names
a child's end."""

import os
import socket

import pytest

from memory_proxy.launcher.supervisor import LaunchError, Supervisor, describe_exit
from memory_proxy.state import StateDir
from tests.support.configs import launcher_config
from tests.support.ports import free_port


def test_the_mode_is_remembered_and_preflight_checks_the_ports_of_that_mode(tmp_path):
    from memory_proxy.launcher import lifecycle as console

    state = StateDir(tmp_path / "state").ensure()
    assert console.remembered_backend(state) is None
    console.remember_backend(state, "sdk")
    assert console.remembered_backend(state) == "sdk"
    (state.root / console.BACKEND_FILE).write_text("nonsense\n")
    assert console.remembered_backend(state) is None  # ignored: `up` falls back to binary

    port, litellm_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(launcher_config(port, litellm_port))
    env = dict(os.environ, LAUNCHER_TEST_KEY="x")
    with socket.socket() as held:  # LiteLLM's port taken: only binary mode minds
        held.bind(("127.0.0.1", litellm_port))
        held.listen()
        Supervisor(config, state, environ=env, backend="sdk").preflight()
        with pytest.raises(LaunchError, match=r"memory_proxy\.litellm_port"):
            Supervisor(config, state, environ=env, backend="binary").preflight()
    sdk_port = free_port()
    with socket.socket() as held:  # the SDK-backed proxy's port taken: mode both refuses
        held.bind(("127.0.0.1", sdk_port))
        held.listen()
        with pytest.raises(LaunchError, match="--sdk-port"):
            Supervisor(config, state, environ=env, backend="both", sdk_port=sdk_port).preflight()


def test_litellm_is_told_to_leave_the_probes_out_of_its_log_and_the_users_paths_stay():
    from memory_proxy.launcher.supervisor import _quiet_paths

    assert _quiet_paths({}) == "/health/liveliness,/health/readiness"
    theirs = {"LITELLM_DISABLE_ACCESS_LOG_PATHS": " /metrics, /health/readiness ,"}
    assert _quiet_paths(theirs) == "/metrics,/health/readiness,/health/liveliness"


def test_a_crash_signal_is_named_a_crash_and_points_at_the_log():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "signal SIGKILL"  # killed, not crashed: no stack to look for
    assert describe_exit(-11) == "signal SIGSEGV, a crash: its log has the Python stack where it died"
    assert describe_exit(-6).startswith("signal SIGABRT, a crash")
    assert describe_exit(-99) == "signal 99"
