"""Every kind of config mistake, through the real launcher: ``check`` (and ``up``) exit 2 with
``file:line: key: what is wrong``, never a traceback; literal secrets are warned about and
masked, never printed."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from tests.support.stacks import cli_env

from .conftest import KEYS, bad_input, seen

GOOD = """model_list:
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
memory_proxy:
  port: 18764
  litellm_port: 18765
"""

# name: (config text, line, key as printed, words of the message)
MISTAKES = {
    "YAML syntax": ("memory_proxy:\n  port: [1\n", 3, "<yaml>", "not valid YAML"),
    "tab indentation": ("memory_proxy:\n\tport: 1\n", 2, "<yaml>", "not valid YAML"),
    "top level is a list": ("- a\n- b\n", 1, "<top level>", "mapping of sections"),
    "duplicate key": (GOOD + "  port: 2\n", 7, "memory_proxy.port", "duplicate key"),
    "list as a key": ("? [a]\n: 1\n", 1, "<top level>", "plain value"),
    "nested 2000 deep": ("a: " + "[" * 2000 + "]" * 2000 + "\n", None, "<yaml>", "nested too deeply"),
    "merge key naming a number": ("memory_proxy:\n  <<: 5\n", 2, "memory_proxy.<<", "merge key"),
    "unknown key in our section": (GOOD + "  prot: 1\n", 7, "memory_proxy.prot", "unknown key"),
    "port is text": (GOOD.replace("port: 18764", "port: eighty"), 5, "memory_proxy.port", "must be an integer"),
    "port out of range": (GOOD.replace("port: 18764", "port: 70000"), 5, "memory_proxy.port", "between 1 and 65535"),
    "port is a date": (GOOD.replace("port: 18764", "port: 2020-01-01"), 5, "memory_proxy.port", "integer"),
    "same two ports": (GOOD.replace("18765", "18764"), 6, "memory_proxy.litellm_port", "must differ"),
    "unset variable where required": (GOOD + "  host: os.environ/FAULTS_NEVER_SET\n", 7, "memory_proxy.host",
                                      "FAULTS_NEVER_SET is not set"),
    "host not loopback, no keys": (GOOD + "  host: 0.0.0.0\n", 7, "memory_proxy.host", "api_keys"),
    "short front-door key": (GOOD + "  api_keys: [short]\n", 7, "memory_proxy.api_keys[0]", "16 characters"),
    "api_keys not a list": (GOOD + "  api_keys: just-one-key-0123456789\n", 7, "memory_proxy.api_keys", "list"),
    "rate limit zero": (GOOD + "  requests_per_minute: 0\n", 7, "memory_proxy.requests_per_minute", "between 1"),
    "negative read timeout": (GOOD + "  timeouts: {read: -1}\n", 7, "memory_proxy.timeouts.read", "between"),
    "timeout NaN": (GOOD + "  timeouts: {total: .nan}\n", 7, "memory_proxy.timeouts.total", "got nan"),
    "timeouts not a mapping": (GOOD + "  timeouts: 5\n", 7, "memory_proxy.timeouts", "must be a mapping"),
    "body limit too small": (GOOD + "  max_body_bytes: 10\n", 7, "memory_proxy.max_body_bytes", "between 1024"),
    "supermemory URL not http": (GOOD + "  supermemory: {base_url: 'ftp://x'}\n", 7,
                                 "memory_proxy.supermemory.base_url", "http(s) URL"),
    "invalid regular expression": ("user_id_mappings:\n  header_patterns:\n    - {header: user-agent, pattern: '(',"
                                   " user_id: x}\n", 3, "user_id_mappings.header_patterns[0].pattern", "regular"),
    "pattern without user_id": ("user_id_mappings:\n  header_patterns:\n    - {header: user-agent, pattern: x}\n", 3,
                                "user_id_mappings.header_patterns[0].user_id", "is required"),
    "invalid id": ("user_id_mappings:\n  default_user_id: 'has space'\n", 2, "user_id_mappings.default_user_id",
                   "not a valid id"),
    "invalid header name": ("user_id_mappings:\n  custom_header: 'x bad'\n", 2, "user_id_mappings.custom_header",
                            "not a valid HTTP header name"),
    "section not a mapping": ("user_id_mappings: [1]\n", 1, "user_id_mappings", "must be a mapping"),
    "model_list not a list": ("model_list: {a: 1}\n", 1, "model_list", "must be a list"),
    "model without litellm_params": ("model_list:\n  - model_name: x\n", 2, "model_list[0]", "litellm_params"),
    "model without model": ("model_list:\n  - model_name: x\n"
                            "    litellm_params: {api_key: os.environ/OPENAI_API_KEY}\n",
                            3, "model_list[0].litellm_params.model", "is required"),
    "forwarding for every model": (GOOD + "general_settings:\n  forward_client_headers_to_llm_api: true\n", 8,
                                   "general_settings.forward_client_headers_to_llm_api", "every model"),
    "forwarding to an ordinary group": (GOOD + "litellm_settings:\n  model_group_settings:\n"
                                        "    forward_client_headers_to_llm_api: [gpt]\n", 9,
                                        "litellm_settings.model_group_settings.forward_client_headers_to_llm_api[0]",
                                        "not Supermemory-backed"),
    "general_settings not a mapping": (GOOD + "general_settings: [1]\n", 7, "general_settings", "must be a mapping"),
}


def run_check(stack, tmp_path, name: str, text: str | bytes):
    config = tmp_path / f"{abs(hash(name))}.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    return config, stack.cli("check", config=config, state=tmp_path / "state", timeout=120)


def test_every_config_mistake_names_key_and_line(stack, tmp_path):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = dict(zip(MISTAKES, pool.map(lambda item: run_check(stack, tmp_path, item[0], item[1][0]),
                                              MISTAKES.items()), strict=True))
    for name, (_text, line, key, words) in MISTAKES.items():
        config, result = results[name]
        seen(f"check ({name})", result.stdout + result.stderr)
        assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr, f"{name}:\n{result.stderr}"
        where = f"{config}:{line}: {key}" if line else f"{config}: {key}"
        assert where in result.stderr and words in result.stderr, f"{name}: wanted {where!r} ... {words!r}\n" \
                                                                   f"{result.stderr}"
        bad_input("config mistake")


def test_file_level_mistakes(stack, tmp_path):
    cases = {
        "not UTF-8": (b"memory_proxy:\n  port: \xff\xfe\n", "2: <file>: not UTF-8 text"),
        "a directory": (None, "<file>: cannot read the config: Is a directory"),
        "missing": (False, "<file>: cannot read the config: No such file or directory"),
    }
    for name, (content, expected) in cases.items():
        config = tmp_path / f"file-{len(name)}.yaml"
        if content is None:
            config.mkdir()
        elif content is not False:
            config.write_bytes(content)
        result = stack.cli("check", config=config, state=tmp_path / "state", timeout=60)
        assert result.returncode == 2 and expected in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
        bad_input("config mistake")
    up = stack.cli("up", "--detach", config=tmp_path / "file-9.yaml", state=tmp_path / "state", timeout=60)
    assert up.returncode == 2 and "not UTF-8 text" in up.stderr and "Traceback" not in up.stderr, up.stderr


def test_merge_keys_and_anchors_are_read_like_litellm_reads_them(stack, tmp_path):
    """LiteLLM reads its file with PyYAML's safe loader, merge keys included; so does ``check``.
    A mistake inside an anchor is reported at the anchor's line."""
    anchors = "x-timeouts: &base {read: 5, connect: 1}\n"
    config, result = run_check(stack, tmp_path, "merge", anchors + GOOD + "  timeouts: {<<: *base, connect: 3}\n")
    assert result.returncode == 0, result.stderr
    config, result = run_check(stack, tmp_path, "merge-bad", "x-timeouts: &base {read: soon}\n" + GOOD
                               + "  timeouts: {<<: *base}\n")
    assert result.returncode == 2 and f"{config}:1: memory_proxy.timeouts.read: must be a number" in result.stderr, \
        result.stderr
    bad_input("config mistake")


LITERALS = {
    "model api_key": ("model_list[0].litellm_params.api_key", "sk-faults-literal-api-key-1111"),
    "Authorization header": ("model_list[0].litellm_params.extra_headers.Authorization",
                             "Bearer sk-faults-literal-auth-2222"),
    "URL password": ("model_list[0].litellm_params.api_base", "faults-url-pass-3333"),
    "database URL": ("general_settings.database_url", "faults-db-pass-4444"),
    "environment_variables": ("environment_variables.ANTHROPIC_API_KEY", "sk-ant-faults-literal-5555"),
    "supermemory key": ("memory_proxy.supermemory.api_key", "sm-faults-literal-6666"),
    "front-door key": ("memory_proxy.api_keys[0]", "fd-faults-literal-key-7777"),
}


def test_check_warns_about_literal_secrets_and_never_prints_them(stack, tmp_path):
    text = f"""model_list:
  - model_name: literal
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: {LITERALS["model api_key"][1]}
      api_base: https://user:{LITERALS["URL password"][1]}@llm.example/v1
      extra_headers: {{Authorization: "{LITERALS["Authorization header"][1]}"}}
general_settings:
  database_url: postgresql://proxy:{LITERALS["database URL"][1]}@db.example/litellm
environment_variables:
  ANTHROPIC_API_KEY: {LITERALS["environment_variables"][1]}
memory_proxy:
  port: 18764
  litellm_port: 18765
  api_keys: [{LITERALS["front-door key"][1]}]
  supermemory: {{api_key: {LITERALS["supermemory key"][1]}}}
"""
    config, human = run_check(stack, tmp_path, "literals", text)
    as_json = stack.cli("check", "--json", config=config, state=tmp_path / "state", timeout=60)
    assert human.returncode == 0 and as_json.returncode == 0, human.stderr
    warnings = json.loads(as_json.stdout)["warnings"]
    for name, (key, secret) in LITERALS.items():
        assert any(w.startswith(key) and "literal secret" in w for w in warnings), (name, warnings)
        for output in (human.stdout, human.stderr, as_json.stdout, as_json.stderr):
            assert secret not in output, f"{name}: {secret} printed by check"
        bad_input("literal secret in the config (warned, masked)")
    seen("check (literal secrets)", human.stdout + human.stderr + as_json.stdout)
    assert "'****'" in human.stdout and "user:****@llm.example" in human.stdout
    references = GOOD + "  api_keys: [os.environ/FAULTS_FRONT_KEY]\n"
    config, clean = run_check(stack, tmp_path, "references", references)
    env = cli_env(**KEYS, FAULTS_FRONT_KEY="fd-faults-reference-key-8888")
    clean = stack.cli("check", config=config, state=tmp_path / "state", env=env, timeout=60)
    assert clean.returncode == 0 and "literal secret" not in clean.stderr, clean.stderr


@pytest.mark.parametrize("name", ["port is text", "YAML syntax", "host not loopback, no keys"])
def test_up_refuses_the_same_mistakes_before_starting_anything(stack, tmp_path, name):
    text, _line, key, words = MISTAKES[name]
    config = tmp_path / "up.yaml"
    config.write_text(text)
    result = stack.cli("up", "--detach", config=config, state=tmp_path / "state", timeout=60)
    assert result.returncode == 2 and key in result.stderr and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "processes.json").exists()
    bad_input("config mistake")
