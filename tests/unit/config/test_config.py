"""Config loading and validation: every mistake names its key and line."""

import dataclasses
import json
from pathlib import Path

import pytest

from memory_proxy.config import litellm as litellm_config
from memory_proxy.config.fields import FIELDS, TABLE, Type, keys
from memory_proxy.config.model import (
    ConfigError,
    OtelConfig,
    ProxySettings,
    SupermemorySettings,
    Timeouts,
    UsageSettings,
    UserIdMappings,
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


def test_a_pattern_that_is_no_text_names_key_and_line():
    for value in ("null", "''", "[a]"):
        text = f"user_id_mappings:\n  header_patterns:\n    - {{header: user-agent, pattern: {value}, user_id: a}}\n"
        [problem] = problems(text)
        assert problem == "3:user_id_mappings.header_patterns[0].pattern: must be a regular expression (text)", value


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
    assert generated["model_list"][1]["litellm_params"] == {  # answered by the memory proxy beside the egress
        "model": "openai/y", "api_base": "http://127.0.0.1:8764/_warmup/openai/v1",
        "api_key": "os.environ/MEMORY_PROXY_EGRESS_SECRET"}
    sdk = litellm_config.build_litellm_config(config, "http://127.0.0.1:8764/_egress", ENV, warmup_answers=False)
    assert sdk["model_list"][1]["litellm_params"] == {"model": "openai/y", "mock_response": "ok"}


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


FALLBACK_MODELS = """model_list:
  - model_name: mem
    litellm_params: {model: openai/x, api_base: https://api.supermemory.ai/v3/https://api.openai.com/v1}
  - model_name: mem2
    litellm_params: {model: openai/y, api_base: https://api.supermemory.ai/v3/https://api.openai.com/v1}
  - model_name: plain
    litellm_params: {model: openai/x}
"""


def test_a_fallback_from_a_supermemory_backed_group_to_an_ordinary_one_is_refused():
    text = FALLBACK_MODELS + """router_settings:
  fallbacks:
    - mem: [mem2, plain]
    - plain: [mem]
litellm_settings:
  context_window_fallbacks: [{mem: [plain]}]
"""
    assert problems(text) == [
        "10:router_settings.fallbacks[0].mem: falls back from the Supermemory-backed 'mem' to 'plain', which is "
        "not: LiteLLM would send it the memory headers",
        "13:litellm_settings.context_window_fallbacks[0].mem: falls back from the Supermemory-backed 'mem' to "
        "'plain', which is not: LiteLLM would send it the memory headers"]
    config = parse(FALLBACK_MODELS + "router_settings:\n  fallbacks: [{mem: [mem2]}, {'*': [plain]}]\n"
                   "  default_fallbacks: [plain]\n")
    assert [w for w in config.warnings if "memory headers" in w] == [
        "router_settings.fallbacks: the fallback for every group (plain) also serves the Supermemory-backed ones, "
        "and would get their memory headers",
        "router_settings.default_fallbacks (plain) also serve the Supermemory-backed groups, and would get their "
        "memory headers"]


def test_fallback_targets_that_are_not_group_names_are_not_supermemory_backed():
    """A number or a list where a group name belongs is no Supermemory-backed group: refused or
    warned about like an ordinary one, never a crash."""
    assert problems(FALLBACK_MODELS + "router_settings:\n  fallbacks: [{mem: [[a], 7]}]\n") == [
        f"9:router_settings.fallbacks[0].mem: falls back from the Supermemory-backed 'mem' to {target}, which "
        "is not: LiteLLM would send it the memory headers" for target in ("['a']", "7")]
    config = parse(FALLBACK_MODELS + "router_settings:\n  fallbacks: [{'*': [1, mem]}]\n  default_fallbacks: [[a]]\n")
    assert [w for w in config.warnings if "memory headers" in w] == [
        "router_settings.fallbacks: the fallback for every group (1) also serves the Supermemory-backed ones, "
        "and would get their memory headers",
        "router_settings.default_fallbacks (['a']) also serve the Supermemory-backed groups, and would get their "
        "memory headers"]


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
    rendered = litellm_config.render(generated, "cfg.yaml")
    for secret in ENV.values():
        assert secret not in rendered


def test_mask_secrets_keeps_references():
    masked = litellm_config.mask_secrets({"a": {"api_key": "sk-literal", "other_key": "os.environ/X", "model": "m"}})
    assert masked == {"a": {"api_key": "****", "other_key": "os.environ/X", "model": "m"}}


def test_json_schema_covers_our_sections():
    schema = json_schema()
    ours = schema["properties"]
    assert set(ours["user_id_mappings"]["properties"]) == set(keys("user_id_mappings"))
    assert set(ours["memory_proxy"]["properties"]) == set(keys("memory_proxy"))
    assert set(ours["memory_proxy"]["properties"]["supermemory"]["properties"]) == set(keys("memory_proxy.supermemory"))
    assert set(ours["memory_proxy"]["properties"]["usage"]["properties"]) == set(keys("memory_proxy.usage"))
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


# --- the field table (memory_proxy/config/fields.py) drives the loader, the typed model and the schema ---

TYPED = {"user_id_mappings": UserIdMappings, "memory_proxy": ProxySettings, "memory_proxy.timeouts": Timeouts,
         "memory_proxy.supermemory": SupermemorySettings, "memory_proxy.usage": UsageSettings,
         "memory_proxy.otel": OtelConfig}


@pytest.mark.parametrize("section", sorted(TYPED))
def test_the_typed_model_has_the_tables_keys_and_defaults(section):
    typed = dataclasses.fields(TYPED[section])
    assert tuple(f.name for f in typed) == keys(section)
    for f in typed:
        entry = FIELDS[f"{section}.{f.name}"]
        if entry.type == Type.SECTION:
            assert f.default == TYPED[entry.key]()
        elif entry.key == "memory_proxy.supermemory.api_key":  # the key itself; the table has its reference
            assert (f.default, entry.default) == (None, "os.environ/SUPERMEMORY_API_KEY")
        else:
            assert f.default == entry.default, entry.key


def test_left_out_keys_take_the_tables_defaults():
    config = parse("model_list: []\n", {"SUPERMEMORY_API_KEY": "sm-from-env"})
    for entry in TABLE:
        if not entry.parent or entry.type == Type.SECTION or entry.parent.endswith("[]"):
            continue
        value = config.user_id_mappings if entry.path[0] == "user_id_mappings" else config.proxy
        for part in entry.path[1:]:
            value = getattr(value, part)
        expected = "sm-from-env" if entry.key == "memory_proxy.supermemory.api_key" else entry.default
        assert value == expected, entry.key


def test_unknown_keys_name_the_tables_keys_in_its_order():
    found = problems("user_id_mappings: {zz: 1, header_patterns: [{header: a, pattern: b, user_id: c, zz: 1}]}\n"
                     "memory_proxy: {zz: 1, timeouts: {zz: 1}, supermemory: {zz: 1}, usage: {zz: 1}, otel: {zz: 1}}\n",
                     {})
    assert found == [
        "1:user_id_mappings.zz: unknown key (allowed: custom_header, header_patterns, default_user_id)",
        "1:user_id_mappings.header_patterns[0].zz: unknown key (allowed: header, pattern, user_id)",
        "2:memory_proxy.zz: unknown key (allowed: host, port, litellm_port, api_keys, allowed_hosts, cors_origins, "
        "optional_routes, max_body_bytes, max_header_bytes, requests_per_minute, timeouts, supermemory, "
        "startup_wait, startup_queue, usage, log_format, otel)",
        "2:memory_proxy.timeouts.zz: unknown key (allowed: connect, read, total)",
        "2:memory_proxy.supermemory.zz: unknown key (allowed: base_url, api_key, cloudflare_retry_delay)",
        "2:memory_proxy.usage.zz: unknown key (allowed: enabled, retention_days, max_mb, queue_size, database_url)",
        "2:memory_proxy.otel.zz: unknown key (allowed: enabled, endpoint, service_name, capture_message_content)",
    ]


def test_problems_keep_their_order_and_texts():
    """One problem per kind of check the table drives, in the order the loader has always reported them."""
    text = """memory_proxy:
  host: ''
  port: os.environ/CFG_UNSET
  litellm_port: 70000
  requests_per_minute: os.environ/CFG_UNSET
  max_body_bytes: 10
  startup_wait: soon
  allowed_hosts: ['http://x']
  cors_origins: nope
  optional_routes: [files]
  timeouts: {connect: 0, total: .nan}
  supermemory: {base_url: 'ftp://x', cloudflare_retry_delay: 61}
  log_format: xml
  usage: {enabled: os.environ/CFG_UNSET, retention_days: 0, database_url: 'mysql://x'}
  otel: {service_name: ' ', endpoint: 'grpc://x', capture_message_content: 1}
user_id_mappings: {custom_header: 'a b', default_user_id: 'a b'}
"""
    assert problems(text, {}) == [
        "16:user_id_mappings.custom_header: 'a b' is not a valid HTTP header name",
        "16:user_id_mappings.default_user_id: 'a b' is not a valid id (letters, digits and . _ : - only, "
        "1-128 characters)",
        "2:memory_proxy.host: must be a host name or address, got ''",
        "3:memory_proxy.port: environment variable CFG_UNSET is not set",
        "3:memory_proxy.port: must be an integer between 1 and 65535, got None",
        "4:memory_proxy.litellm_port: must be an integer between 1 and 65535, got 70000",
        "6:memory_proxy.max_body_bytes: must be an integer between 1024 and 1.09951e+12, got 10",
        "7:memory_proxy.startup_wait: must be a number between 0 and 3600, got 'soon'",
        "5:memory_proxy.requests_per_minute: environment variable CFG_UNSET is not set",
        "5:memory_proxy.requests_per_minute: must be an integer between 1 and 1e+07, got None",
        "8:memory_proxy.allowed_hosts[0]: 'http://x' is not a host name such as devbox.lan or *.corp.example "
        "(no port, no scheme)",
        "9:memory_proxy.cors_origins: must be a list, each an origin such as http://localhost:3000 (scheme, host, "
        "optional port; no path)",
        "10:memory_proxy.optional_routes[0]: 'files' is not one of audio, images, moderations, rerank",
        "11:memory_proxy.timeouts.connect: must be a number between 0.01 and 600, got 0",
        "11:memory_proxy.timeouts.total: must be a number between 1 and 604800, got nan",
        "12:memory_proxy.supermemory.base_url: must be an http(s) URL, got 'ftp://x'",
        "12:memory_proxy.supermemory.cloudflare_retry_delay: must be a number between 0 and 60, got 61",
        "13:memory_proxy.log_format: must be one of text, json, got 'xml'",
        "14:memory_proxy.usage.enabled: environment variable CFG_UNSET is not set",
        "14:memory_proxy.usage.enabled: must be true or false, got None",
        "14:memory_proxy.usage.retention_days: must be an integer between 1 and 36600, got 0",
        "14:memory_proxy.usage.database_url: must be a postgresql://... URL (or leave it out for SQLite in the "
        "state folder)",
        "15:memory_proxy.otel.capture_message_content: must be true or false, got 1",
        "15:memory_proxy.otel.endpoint: must be an http(s) URL of an OTLP/HTTP collector, got 'grpc://x'",
        "15:memory_proxy.otel.service_name: must be a non-empty string, got ' '",
    ]


def _samples(entry) -> list:
    """Values to try at a key: good ones, the edges of its bounds, and wrong ones."""
    if entry.type in (Type.INTEGER, Type.SECONDS):
        step = 1 if entry.type == Type.INTEGER else 0.001
        return [entry.low, entry.high, entry.low - step, entry.high + step, "text", True, None, 1.5,
                "os.environ/CFG_TEST_VALUE"]
    if entry.type == Type.BOOLEAN:
        return [True, False, "true", None, 1, "os.environ/CFG_TEST_VALUE"]
    if entry.type == Type.CHOICE:
        return [*entry.choices, "xml", None]
    if entry.type == Type.NAMES:
        good = {"memory_proxy.allowed_hosts": "devbox.lan", "memory_proxy.cors_origins": "http://localhost:3000",
                "memory_proxy.optional_routes": "audio"}[entry.key]
        return [[good], [good, good], [], None, ["http://devbox.lan"], ["*"], ["files"], [5], "devbox.lan"]
    if entry.key == "memory_proxy.api_keys":
        return [["os.environ/CFG_TEST_KEY"], ["x" * 16], ["x" * 15], [5], "x" * 16, None, []]
    if entry.key == "user_id_mappings.header_patterns":
        good = {"header": "user-agent", "pattern": "^x", "user_id": "a"}
        return [[good], [good, {**good, "pattern": "^y"}], [{"header": "user-agent"}], [{**good, "zz": 1}],
                [{**good, "user_id": "a b"}], [{**good, "header": "a b"}], ["nope"], "nope", None]
    if entry.type == Type.SECTION:
        return [{}, None, 5, {"zz": 1}]
    return [entry.default, "", " ", None, 5, "x bad", "a" * 129, "ftp://x", "http://127.0.0.1:4318",
            "postgresql://db/x", "localhost", "x-a", "X-Upper", "os.environ/CFG_TEST_VALUE"]


def _environment(entry) -> dict[str, str]:
    """A variable for ``os.environ/CFG_TEST_VALUE`` that holds a good value of the key."""
    value = entry.low if entry.type in (Type.INTEGER, Type.SECONDS) else entry.default or {
        "memory_proxy.usage.database_url": "postgresql://db/x", "memory_proxy.otel.endpoint": "http://127.0.0.1:4318",
        "memory_proxy.otel.service_name": "mp"}.get(entry.key, "x")
    return {"CFG_TEST_VALUE": str(value), "CFG_TEST_KEY": "front-door-key-0123456789"}


# Where the loader is more lenient than the schema, which describes the form the docs show.
SCHEMA_STRICTER: set[tuple[str, str]] = set()


@pytest.mark.parametrize("entry", [e for e in TABLE if e.parent and not e.parent.endswith("[]")], ids=repr)
def test_the_schema_accepts_what_the_loader_accepts(entry):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    for value in _samples(entry):
        document: dict = {"model_list": [], "memory_proxy": {"api_keys": ["os.environ/CFG_TEST_KEY"]}}
        if entry.key == "memory_proxy.api_keys":
            document["memory_proxy"] = {}
        node = document
        for part in entry.path[:-1]:
            node = node.setdefault(part, {})
        node[entry.name] = value
        try:
            parse(json.dumps(document), _environment(entry))
            loader = True
        except ConfigError as exc:
            keys_wrong = [p.key for p in exc.problems]
            assert all(k == entry.key or k.startswith((entry.key + ".", entry.key + "[")) for k in keys_wrong), \
                (value, exc.problems)
            loader = False
        schema = validator.is_valid(document)
        if (entry.key, repr(value)) in SCHEMA_STRICTER:
            assert loader and not schema
        else:
            assert schema == loader, f"{entry.key}: {value!r}: the loader says {loader}, the schema {schema}"


def test_an_alias_bomb_is_refused_at_once_naming_its_key():
    """A few hundred bytes of ``*alias`` references would expand to billions of values: refused
    from the composed node graph (each anchor counted once), not built."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    [problem] = problems("\n".join(lines) + "\n")
    assert problem == "6:a5: expands to more than 100,000 values through its aliases (*name); refused"
    [problem] = problems("x: &x [a, *x]\n")
    assert problem.endswith("<yaml>: nested too deeply")


def test_shared_anchors_still_work():
    text = """shared: &params {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
model_list:
""" + "".join(f"  - {{model_name: m{i}, litellm_params: *params}}\n" for i in range(50))
    config = parse(text)
    assert len(config.models) == 50


def test_check_masks_secrets_inside_values():
    masked = litellm_config.mask_secrets({
        "model_list": [{"litellm_params": {"api_base": "https://h/v1?key=QSECRET&x=1", "api_key": 123456789012,
                                           "max_tokens": 100, "rpm": 5}}],
        "environment_variables": {"MY_PASS": "ENVSECRET", "DB_TOKEN_X": 42, "REGION": "eu"},
        "litellm_settings": {"success_callback": ["https://hooks.slack.com/services/T0/B0/SLACKSECRET"]},
        "callback_settings": {"otel": {"headers": "Authorization=Bearer HDRSECRET,x-tenant=a"},
                              "other": {"url": "http://u:URLSECRET@h/x?sig=SIGSECRET", "note": "Bearer BRSECRET"}},
    })
    text = json.dumps(masked)
    assert "SECRET" not in text and "123456789012" not in text
    params = masked["model_list"][0]["litellm_params"]
    assert params == {"api_base": "https://h/v1?key=****&x=1", "api_key": "****", "max_tokens": 100, "rpm": 5}
    assert masked["environment_variables"] == {"MY_PASS": "****", "DB_TOKEN_X": "****", "REGION": "eu"}
    assert masked["callback_settings"]["otel"]["headers"] == "Authorization=****,x-tenant=a"
    assert masked["callback_settings"]["other"]["url"] == "http://u:****@h/x?sig=****"


def test_config_errors_mask_a_password_they_quote():
    text = ("memory_proxy:\n  supermemory: {base_url: 'ftp://u:URLSECRET@h'}\n  otel: {endpoint: 'ftp://u:OTSECRET@h'}\n"
            "  cors_origins: ['http://u:CORSSECRET@h']\n")
    found = problems(text)
    assert len(found) == 3 and "SECRET" not in " ".join(found)
    assert "2:memory_proxy.supermemory.base_url: must be an http(s) URL, got 'ftp://u:****@h'" in found


@pytest.mark.parametrize(("value", "got"), [("5", "int"), ("{a: b}", "dict"), ("true", "bool"), ("''", "an empty one")])
def test_a_supermemory_key_that_is_no_string_is_refused_without_quoting_it(value, got):
    [problem] = problems(f"memory_proxy:\n  supermemory:\n    api_key: {value}\n", {})
    assert problem == (f"3:memory_proxy.supermemory.api_key: must be a string, got {got} "
                       "(prefer os.environ/SUPERMEMORY_API_KEY)")


def test_a_nul_byte_is_a_one_line_problem_at_its_line():
    [problem] = problems("memory_proxy:\n  port: 1\n  host: \"a\x00b\"\n")
    assert problem == "3:<yaml>: not valid YAML: character U+0000 is not allowed"


def test_a_model_name_that_is_no_string_says_so():
    [problem] = problems("model_list:\n  - model_name: 5\n    litellm_params: {model: x}\n")
    assert problem == "2:model_list[0].model_name: must be a non-empty string, got 5"
    [problem] = problems("model_list:\n  - litellm_params: {model: x}\n")
    assert problem == "2:model_list[0].model_name: is required"


@pytest.mark.parametrize("section", ["general_settings", "litellm_settings", "router_settings", "callback_settings",
                                     "environment_variables"])
def test_litellms_mapping_sections_must_be_mappings(section):
    assert problems(f"{section}: [1]\n") == [f"1:{section}: must be a mapping, got list"]


def test_literal_secrets_in_our_sections_are_warned_about_with_their_line():
    config = parse("memory_proxy:\n  api_keys: [front-door-key-0123456789]\n  supermemory:\n    api_key: sm-literal\n"
                   "  usage: {database_url: 'postgresql://u:pw@db/x'}\n", {})
    assert [w.split(":")[0] for w in config.warnings] == [
        "memory_proxy.api_keys[0] (line 2)", "memory_proxy.supermemory.api_key (line 4)",
        "memory_proxy.usage.database_url (line 5)"]
