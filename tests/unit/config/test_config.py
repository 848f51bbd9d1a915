"""Config loading and validation: every mistake names its key and line."""

from pathlib import Path

import pytest

from memory_proxy.config import litellm as litellm_config
from memory_proxy.config.model import (
    MAPPING_KEYS,
    PROXY_KEYS,
    SUPERMEMORY_KEYS,
    USAGE_KEYS,
    ConfigError,
    load_config,
    parse_config,
)
from memory_proxy.config.schema import json_schema

ROOT = Path(__file__).resolve().parents[3]
ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-test-anthropic", "SUPERMEMORY_API_KEY": "sm-test"}


def parse(text: str, environ=None):
    return parse_config(text, Path("cfg.yaml"), ENV if environ is None else environ)


def problems(text: str, environ=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return [f"{p.line}:{p.key}: {p.message}" for p in info.value.problems]


def test_shipped_config_loads_with_defaults():
    config = load_config(ROOT / "config" / "config.yaml", ENV)
    assert config.proxy.port == 8764 and config.proxy.litellm_port == 8765
    assert config.proxy.host == "127.0.0.1"
    assert config.proxy.supermemory.base_url == "https://api.supermemory.ai"
    assert config.proxy.supermemory.api_key == "sm-test"
    assert config.user_id_mappings.custom_header == "x-memory-user-id"
    assert config.user_id_mappings.default_user_id == "default-dev"
    ids = {p.user_id for p in config.user_id_mappings.header_patterns}
    assert {"pycharm-ai", "claude-cli"} <= ids
    assert config.supermemory_groups == ["claude-sonnet-4-5", "memory/gpt-4o-mini"]
    assert config.warnings == ()


def test_empty_sections_take_defaults():
    config = parse("model_list: []\n", {})
    assert config.user_id_mappings.default_user_id == "default-dev"
    assert config.proxy.max_body_bytes == 32 * 1024 * 1024


def test_bad_regex_names_key_and_line():
    text = "user_id_mappings:\n  header_patterns:\n    - {header: user-agent, pattern: '([', user_id: a}\n"
    [problem] = problems(text)
    assert problem.startswith("3:user_id_mappings.header_patterns[0].pattern: invalid regular expression")


def test_duplicate_pattern_and_id_with_spaces():
    text = """user_id_mappings:
  header_patterns:
    - {header: user-agent, pattern: '^x', user_id: a}
    - {header: User-Agent, pattern: '^x', user_id: b}
  default_user_id: has spaces
"""
    found = problems(text)
    assert any(p.startswith("4:user_id_mappings.header_patterns[1].pattern: duplicate") for p in found)
    assert any(p.startswith("5:user_id_mappings.default_user_id: 'has spaces' is not a valid id") for p in found)


def test_unknown_keys_in_our_sections():
    text = "memory_proxy:\n  prot: 8764\n  supermemory:\n    base_ur: http://x\n"
    found = problems(text)
    assert any(p.startswith("2:memory_proxy.prot: unknown key") for p in found)
    assert any(p.startswith("4:memory_proxy.supermemory.base_ur: unknown key") for p in found)


def test_missing_supermemory_key_disables_the_backed_models():
    text = """model_list:
  - model_name: mem
    litellm_params: {model: openai/x, api_base: https://api.supermemory.ai/v3/https://api.openai.com/v1}
  - model_name: plain
    litellm_params: {model: openai/x}
memory_proxy:
  supermemory:
    api_key: os.environ/SUPERMEMORY_API_KEY
"""
    config = parse(text, {})
    assert [(m.model_name, m.missing_env) for m in config.models] == [("mem", ("SUPERMEMORY_API_KEY",)),
                                                                       ("plain", ())]
    assert any("'mem' is disabled" in w for w in config.warnings)
    [problem] = problems(text.replace("os.environ/SUPERMEMORY_API_KEY", "null"), {})
    assert problem == "8:memory_proxy.supermemory.api_key: is required because a model is Supermemory-backed"


def test_missing_provider_key_only_disables_that_model():
    text = """model_list:
  - model_name: a
    litellm_params: {model: openai/x, api_key: os.environ/NOPE_KEY}
  - model_name: b
    litellm_params: {model: openai/y, api_key: os.environ/OPENAI_API_KEY}
"""
    config = parse(text)
    assert [m.missing_env for m in config.models] == [("NOPE_KEY",), ()]
    assert any("'a' is disabled" in w and "NOPE_KEY" in w for w in config.warnings)
    generated = litellm_config.build_litellm_config(config, "http://127.0.0.1:8764/_egress", ENV)
    # b, and the hidden warm-up group of its provider family (from b's model: a is left out)
    assert [m["model_name"] for m in generated["model_list"]] == ["b", "memory-proxy-warmup/openai"]
    assert generated["model_list"][1]["litellm_params"] == {"model": "openai/y", "mock_response": "ok"}


def test_environment_references_resolve_everywhere_in_our_sections():
    text = "memory_proxy:\n  port: os.environ/MP_PORT\n  api_keys: [os.environ/FRONT]\n"
    config = parse(text, {"MP_PORT": "9000", "FRONT": "front-door-key-0123456789"})
    assert config.proxy.port == 9000
    assert config.proxy.api_keys == ("front-door-key-0123456789",)
    [problem] = problems(text, {"MP_PORT": "9000"})
    assert problem == "3:memory_proxy.api_keys[0]: environment variable FRONT is not set"


def test_non_loopback_host_needs_front_door_keys():
    [problem] = problems("memory_proxy:\n  host: 0.0.0.0\n")
    assert problem.startswith("2:memory_proxy.host: binding to 0.0.0.0 needs memory_proxy.api_keys")


def test_global_header_forwarding_is_refused():
    [problem] = problems("general_settings:\n  forward_client_headers_to_llm_api: true\n")
    assert problem.startswith("2:general_settings.forward_client_headers_to_llm_api: would forward the memory headers")


def test_mixed_model_group_is_refused():
    text = """model_list:
  - model_name: g
    litellm_params: {model: openai/x, api_base: https://api.supermemory.ai/v3/https://api.openai.com/v1}
  - model_name: g
    litellm_params: {model: openai/x}
"""
    [problem] = problems(text)
    assert problem.startswith("2:model_list[0].model_name: model group 'g' mixes")


def test_yaml_syntax_error_and_duplicate_key():
    [problem] = problems("memory_proxy:\n  port: [1,\n")
    assert ":<yaml>: not valid YAML" in problem
    [problem] = problems("memory_proxy:\n  port: 1\n  port: 2\n")
    assert problem == "3:memory_proxy.port: duplicate key"


def test_wrong_types_are_reported_not_raised():
    found = problems("memory_proxy:\n  port: eighty\n  timeouts: 5\nuser_id_mappings:\n  header_patterns: nope\n")
    assert any(p.startswith("2:memory_proxy.port: must be an integer") for p in found)
    assert any(p.startswith("3:memory_proxy.timeouts: must be a mapping") for p in found)
    assert any(p.startswith("5:user_id_mappings.header_patterns: must be a list") for p in found)


def test_error_render_has_file_and_line():
    with pytest.raises(ConfigError) as info:
        parse("memory_proxy:\n  port: 0\n")
    assert "cfg.yaml:2: memory_proxy.port: must be an integer between 1 and 65535, got 0" in info.value.render()


def test_literal_secret_warns():
    config = parse("memory_proxy:\n  supermemory:\n    api_key: sm-literal-secret\n", {})
    assert any("literal secret" in w and "supermemory.api_key" in w for w in config.warnings)


def test_generated_litellm_config():
    config = load_config(ROOT / "config" / "config.yaml", ENV)
    generated = litellm_config.build_litellm_config(config, "http://127.0.0.1:8764/_egress", ENV)
    assert "user_id_mappings" not in generated and "memory_proxy" not in generated
    general = generated["general_settings"]
    assert general["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert general["disable_model_info_refresh"] is True
    models = {m["model_name"]: m["litellm_params"] for m in generated["model_list"]}
    assert models["memory/gpt-4o-mini"]["api_base"] == "http://127.0.0.1:8764/_egress/v3/https://api.openai.com/v1"
    assert models["claude-sonnet-4-5"]["api_base"] == "http://127.0.0.1:8764/_egress/v3/https://api.anthropic.com"
    assert models["memory/gpt-4o-mini"]["extra_headers"] == {
        "x-memory-proxy-egress-secret": "os.environ/MEMORY_PROXY_EGRESS_SECRET"}
    assert "extra_headers" not in models["gpt-4o-mini"] and "api_base" not in models["gpt-4o-mini"]
    forwarding = generated["litellm_settings"]["model_group_settings"]["forward_client_headers_to_llm_api"]
    assert forwarding == ["claude-sonnet-4-5", "memory/gpt-4o-mini"]
    rendered = litellm_config.render(generated)
    for secret in ENV.values():
        assert secret not in rendered


def test_mask_secrets_keeps_references():
    masked = litellm_config.mask_secrets({"a": {"api_key": "sk-literal", "other_key": "os.environ/X", "model": "m"}})
    assert masked == {"a": {"api_key": "****", "other_key": "os.environ/X", "model": "m"}}


def test_json_schema_covers_our_sections():
    schema = json_schema()
    ours = schema["properties"]
    assert set(ours["user_id_mappings"]["properties"]) == set(MAPPING_KEYS)
    assert set(ours["memory_proxy"]["properties"]) == set(PROXY_KEYS)
    assert set(ours["memory_proxy"]["properties"]["supermemory"]["properties"]) == set(SUPERMEMORY_KEYS)
    assert set(ours["memory_proxy"]["properties"]["usage"]["properties"]) == set(USAGE_KEYS)
    assert ours["memory_proxy"]["additionalProperties"] is False


def test_log_format():
    assert parse("model_list: []\n", {}).proxy.log_format == "text"
    assert parse("model_list: []\nmemory_proxy:\n  log_format: json\n", {}).proxy.log_format == "json"
    [problem] = problems("model_list: []\nmemory_proxy:\n  port: 8764\n  log_format: xml\n", {})
    assert problem == "4:memory_proxy.log_format: must be one of text, json, got 'xml'"


def test_otel_section():
    config = parse("model_list: []\nmemory_proxy:\n  otel: {endpoint: 'http://127.0.0.1:4318', service_name: mp}\n", {})
    assert config.proxy.otel.endpoint == "http://127.0.0.1:4318" and config.proxy.otel.service_name == "mp"
    assert config.proxy.otel.enabled is True and config.proxy.otel.capture_message_content is False
    found = problems("model_list: []\nmemory_proxy:\n  otel:\n    endpoint: grpc://x\n    enabled: maybe\n"
                     "    colour: blue\n", {})
    assert "4:memory_proxy.otel.endpoint: must be an http(s) URL of an OTLP/HTTP collector, got 'grpc://x'" in found
    assert "5:memory_proxy.otel.enabled: must be true or false, got 'maybe'" in found
    assert any(p.startswith("6:memory_proxy.otel.colour: unknown key") for p in found)
