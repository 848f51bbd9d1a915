"""Test tiers, in one place.

``litellm``: a test that runs LiteLLM, the real binary or its Router in-process (slow to start:
8-16 s per binary, seconds per import). ``python3 scripts/run_tests.py --fast`` runs the rest
(``-m "not litellm"``): the request path against the emulator, config, transport, protocol,
launcher and front-door units, in well under a minute.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_LITELLM = ("e2e/", "faults/", "test_parity.py", "test_sdk_mode.py", "test_observability.py", "test_tracing.py")


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
