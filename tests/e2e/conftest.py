"""The whole chain, for real: ``start_proxies.py up --detach`` starts the real ``litellm``
binary and the memory proxy in front of the upstream emulator, once per test session.

The emulator listens on two ports that share one state: port A plays OpenAI and Anthropic,
port B plays Supermemory's router (``memory_proxy.supermemory.base_url``), so only models
whose ``api_base`` starts with B are Supermemory-backed (see ``tests/support/stacks.py``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.stacks import new_stack, start_emulator

PYCHARM_UA = "OpenAIClientImpl/Java unknown"
CLAUDE_UA = "claude-cli/2.0.14 (external, cli)"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The emulator on two ports (providers, Supermemory) sharing one state."""
    emu = start_emulator(tmp_path_factory.mktemp("emulator"), chunk_delay=0.01)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, emulator):
    """LiteLLM and the memory proxy, started once by ``up --detach``; ``down`` at the end."""
    if shutil.which("litellm", path=str(Path(sys.executable).parent)) is None and shutil.which("litellm") is None:
        pytest.fail("the litellm executable is missing: the e2e tests run the real binary")
    with new_stack(tmp_path_factory.mktemp("e2e"), emulator).running() as st:
        yield st
