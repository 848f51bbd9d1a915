"""``check`` and ``up`` on good and broken configs (nothing is started here)."""

from __future__ import annotations

import json
import time

from tests.support.configs import config_text
from tests.support.ports import free_port, port_taken
from tests.support.stacks import Stack

LITERAL = "sk-literal-secret-value-123"


def make(tmp_path, text: str) -> Stack:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return Stack(tmp_path, config, tmp_path / "state", 1, 2, free_port(), free_port())


def test_check_prints_the_generated_config_with_secrets_masked(tmp_path):
    text = config_text(9, 10, 11, 12).replace("model_list:\n", f"""model_list:
  - model_name: literal-key
    litellm_params: {{model: openai/x, api_base: "http://127.0.0.1:9/v1", api_key: {LITERAL}}}
""", 1)
    stack = make(tmp_path, text)
    result = stack.cli("check", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert LITERAL not in result.stdout + result.stderr
    assert "api_key: '****'" in result.stdout or "api_key: ****" in result.stdout
    assert "master_key: os.environ/LITELLM_MASTER_KEY" in result.stdout
    assert "http://127.0.0.1:11/_egress/v3/http://127.0.0.1:9/v1" in result.stdout
    assert "x-memory-proxy-egress-secret: os.environ/MEMORY_PROXY_EGRESS_SECRET" in result.stdout
    assert "E2E_NEVER_SET_KEY" in result.stderr  # the disabled model is named
    assert "literal secret" in result.stderr
    as_json = json.loads(stack.cli("check", "--json", timeout=60).stdout)
    assert as_json["ok"] and as_json["models_missing_keys"] == {"needs-a-key": ["E2E_NEVER_SET_KEY"]}
    assert as_json["supermemory_backed"] == ["claude-sonnet-4-5", "memory/gpt-4o-mini"]


def test_broken_config_is_refused_by_check_and_up_naming_the_key(tmp_path):
    text = config_text(9, 10, 0, 0).replace("cloudflare_retry_delay: 0.1", "cloudflare_retry_delay: soon")
    text = text.replace("  port: 0\n", "  prot: 8999\n").replace("litellm_port: 0", "litellm_port: 8998")
    stack = make(tmp_path, text)
    checked = stack.cli("check", timeout=60)
    assert checked.returncode == 2
    for key in ("memory_proxy.prot: unknown key", "memory_proxy.supermemory.cloudflare_retry_delay"):
        assert key in checked.stderr, checked.stderr
    assert f"{stack.config}:" in checked.stderr  # file:line
    started = time.monotonic()
    refused = stack.cli("up", "--detach", timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert time.monotonic() - started < 10, "a broken config must be refused before anything starts"
    assert "memory_proxy.prot" in refused.stderr and "cloudflare_retry_delay" in refused.stderr
    assert not (stack.state / "processes.json").exists()
    assert not (stack.state / "litellm_config.generated.yaml").exists()
    assert not port_taken(8998)
    foreground = stack.cli("up", timeout=60)
    assert foreground.returncode == 2 and "memory_proxy.prot" in foreground.stderr
