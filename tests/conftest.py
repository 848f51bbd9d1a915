"""Test tiers and run order, in one place.

Layout: ``unit/`` (mirrors ``memory_proxy/``) holds every test that starts no process; the
modules at this level run processes (the launcher, ``python -m memory_proxy``, PostgreSQL,
Chromium) or LiteLLM; ``e2e/`` runs the whole chain as a user starts it, ``faults/`` breaks
it. ``support/`` is what they share (ports, waiting, servers, configs, stacks) and
``emulator/`` the offline stand-in for OpenAI, Anthropic and Supermemory.

``litellm``: a test that runs LiteLLM, the real binary or its Router in-process (slow to start:
8-16 s per binary, seconds per import). ``python3 scripts/run_tests.py --fast`` runs the rest
(``-m "not litellm"``, three files at a time): the request path against the emulator, config,
transport, protocol, launcher and front-door units.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_LITELLM = ("e2e/", "faults/", "test_parity.py", "test_parity_callbacks.py", "test_sdk_mode.py",
                 "test_sdk_callbacks.py", "test_observability.py", "test_tracing.py")

# The order of the modules of e2e/ and faults/. pytest would run them by file name; their
# modules share one session-scoped stack (started at its first use, stopped at the end of the
# session), so what one module does to it, the next ones meet. Within a module the tests run
# as written. A module of these folders that is missing here stops the run: give it a place.
RUN_ORDER = {
    "e2e": (
        # Starts nothing (``check``, and ``up`` refusing broken configs within 10 s): first, so
        # the session stack is not booting LiteLLM beside it.
        "test_config.py",
        # The session stack as ``up --detach`` left it: its printed client settings, ``status``
        # healthy without waiting, ``up`` again saying it is already running.
        "test_clients.py",
        # Kills LiteLLM (scripts/restart_litellm.sh), then ``down`` and ``up`` of the session
        # stack: after the modules that want it undisturbed. It leaves the stack up and healthy.
        "test_lifecycle.py",
        # Stacks of their own beside the session one (they share the emulator only).
        "test_modes.py",
        # Need a running session stack, nothing more (each waits for health where it matters).
        "test_front_door.py",
        "test_memory.py",
        "test_usage.py",
    ),
    "faults": (
        "test_properties.py",  # starts nothing
        # The session stack's own faults. test_upstream.py's last test leaves LiteLLM reading a
        # never-ending answer; test_litellm.py's first SIGKILL ends it, so it comes right after
        # (else that request would end at LiteLLM's own timeout, in the middle of a later test
        # that counts the emulator's open streams). test_litellm.py leaves LiteLLM restarted and
        # healthy, the memory proxy the same process.
        "test_bad_input.py",
        "test_who.py",
        "test_upstream.py",
        "test_litellm.py",
        # Their own emulators, proxies and stacks (test_load.py also a proxy in front of the
        # session's LiteLLM): the session stack's LiteLLM is not killed any more.
        "test_load.py",
        "test_state_files.py",
        "test_startup.py",
        "test_config.py",
        # Last: greps every output, log and state folder the modules above collected (SEEN,
        # STATE_DIRS) for every key they set (SECRETS), and checks that the session's memory
        # proxy is the process it was at the start, after every fault.
        "test_secrets.py",
    ),
}


@pytest.fixture(scope="session", autouse=True)
def one_tls_context():
    """One TLS context for every httpx client the tests make. Each ``httpx.get``/``post`` is a
    new client whose default context loads the CA bundle again (~20 ms), though every test talks
    plain HTTP on loopback: a few hundred such calls were a quarter of the fast tier's time."""
    from httpx._transports import default

    made = default.create_ssl_context
    shared = made()

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        return shared if verify is True and cert is None and trust_env else made(verify, cert, trust_env)

    default.create_ssl_context = create_ssl_context
    yield
    default.create_ssl_context = made


@pytest.fixture(scope="module")
def emu_server():
    """The emulator app served in this process (a thread), one per module: LiteLLM's stand-in
    behind ``support.servers.running_proxy`` and Supermemory behind its egress."""
    from tests import emulator
    from tests.support.servers import ServerThread

    with ServerThread(emulator.create_app(chunk_delay=0.15, chunks=5)) as server:
        yield server


@pytest.fixture
def emu(emu_server):
    """``emu_server``, reset for each test. (A module or folder may define its own ``emu``.)"""
    httpx.post(emu_server.url + "/_emulator/reset")
    return emu_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        if where.startswith(NEEDS_LITELLM):
            item.add_marker(pytest.mark.litellm)
    for folder, modules in RUN_ORDER.items():
        places = [i for i, item in enumerate(items) if item.path.parent == TESTS / folder]
        unplaced = sorted({items[i].path.name for i in places} - set(modules))
        if unplaced:
            raise pytest.UsageError(f"tests/{folder}/{', '.join(unplaced)}: not in RUN_ORDER (tests/conftest.py)")
        ordered = sorted((items[i] for i in places), key=lambda item: modules.index(item.path.name))
        for i, item in zip(places, ordered, strict=True):
            items[i] = item
