"""Test tiers, in one place.

``litellm``: a test that runs LiteLLM, the real binary or its Router in-process (slow to start:
8-16 s per binary, seconds per import). ``python3 scripts/run_tests.py --fast`` runs the rest
(``-m "not litellm"``): the request path against the emulator, config, transport, protocol,
launcher and front-door units, in well under a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_LITELLM = ("e2e/", "faults/", "test_parity.py", "test_sdk_mode.py", "test_observability.py", "test_tracing.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        if where.startswith(NEEDS_LITELLM):
            item.add_marker(pytest.mark.litellm)
