"""SDK mode's startup with the user's LiteLLM settings, as the LiteLLM proxy starts with them:
``environment_variables`` set for the app's lifetime and put back, an integration that
cannot be built refused at startup with its name (the binary's LiteLLM refuses to start too).
What the callbacks then send is in ``test_parity_callbacks.py``."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from memory_proxy.config.model import parse_config
from tests.support.configs import build_config, model
from tests.support.ports import free_port
from tests.support.servers import ServerThread

ENV = {"OPENAI_API_KEY": "sk-sdk-callbacks-test", "SDK_TEST_SOURCE": "from-the-environment"}


def sdk_app(tmp_path: Path, extra: str):
    from memory_proxy.sdk.app import create_sdk_app

    port = free_port()
    text = build_config([model("plain", "openai/gpt-4o-mini", "http://127.0.0.1:9/v1")], proxy={"port": port},
                        extra=extra)
    config = parse_config(text, tmp_path / "config.yaml", ENV)
    return create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port, environ=ENV), port


def test_environment_variables_are_set_while_the_app_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("SDK_TEST_REFERENCE", raising=False)
    monkeypatch.setenv("SDK_TEST_LITERAL", "before")
    path = os.environ["PATH"]
    app, port = sdk_app(tmp_path, """environment_variables:
  SDK_TEST_REFERENCE: os.environ/SDK_TEST_SOURCE
  SDK_TEST_LITERAL: literal
  PATH: /nowhere
""")
    with ServerThread(app, port=port):
        assert os.environ["SDK_TEST_REFERENCE"] == "from-the-environment"  # os.environ/ resolved
        assert os.environ["SDK_TEST_LITERAL"] == "literal"
        assert os.environ["PATH"] == path  # a name LiteLLM never takes from the config
    assert "SDK_TEST_REFERENCE" not in os.environ and os.environ["SDK_TEST_LITERAL"] == "before"


@pytest.mark.skipif(importlib.util.find_spec("langfuse") is not None, reason="the langfuse package is installed")
def test_an_integration_that_cannot_be_built_stops_startup(tmp_path):
    from memory_proxy.sdk.backend import _litellm
    from memory_proxy.sdk.callbacks import CallbackError

    litellm = _litellm()
    before = (list(litellm.callbacks), list(litellm.success_callback), os.environ.get("LANGFUSE_HOST"))
    app, _ = sdk_app(tmp_path, """litellm_settings:
  success_callback: ["langfuse"]
environment_variables:
  LANGFUSE_HOST: http://127.0.0.1:9
""")

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(CallbackError, match=r"'langfuse'.*No package metadata was found for langfuse"):
        asyncio.run(start())
    assert (list(litellm.callbacks), list(litellm.success_callback), os.environ.get("LANGFUSE_HOST")) == before
