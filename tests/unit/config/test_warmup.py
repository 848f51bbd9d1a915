"""Warm-up: what is warmed (memory_proxy/config/warmup.py) and sending it to the binary
(memory_proxy/launcher/warmup.py)."""


def test_warm_up_groups_one_per_provider_family_of_the_models_litellm_gets():
    from pathlib import Path

    from memory_proxy.config import warmup
    from memory_proxy.config.model import parse_config

    text = """model_list:
  - {model_name: a, litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/K}}
  - {model_name: b, litellm_params: {model: openai/gpt-4o}}
  - {model_name: c, litellm_params: {model: anthropic/claude-3-5-haiku-latest, api_key: os.environ/UNSET_K}}
  - {model_name: d, litellm_params: {model: my-model, custom_llm_provider: hosted_vllm}}
"""
    config = parse_config(text, Path("t.yaml"), {"K": "k"})
    assert warmup.families(config) == {"openai": "openai/gpt-4o-mini", "hosted_vllm": "my-model"}  # c: key unset
    assert warmup.deployments(config) == [
        {"model_name": "memory-proxy-warmup/openai",
         "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": "ok"}},
        {"model_name": "memory-proxy-warmup/hosted_vllm",
         "litellm_params": {"model": "my-model", "mock_response": "ok"}},
    ]
    assert warmup.deployments(config, "http://127.0.0.1:8764/_warmup") == [  # binary mode: canned answers
        {"model_name": "memory-proxy-warmup/openai",
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:8764/_warmup/openai/v1",
                            "api_key": "os.environ/MEMORY_PROXY_EGRESS_SECRET"}},
        {"model_name": "memory-proxy-warmup/hosted_vllm",  # no canned answers for this family: LiteLLM's mock
         "litellm_params": {"model": "my-model", "mock_response": "ok"}},
    ]
    shapes = [(path, stream) for _, path, stream, _ in warmup.requests(["memory-proxy-warmup/openai"])]
    assert shapes == [("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/v1/messages", False),
                      ("/v1/messages", True)]


def test_warm_up_summary_names_what_was_warmed_and_what_failed():
    from memory_proxy.config import warmup
    from memory_proxy.launcher.warmup import run

    sent = []

    def send(url, body, headers):
        sent.append((url, body["stream"], headers["authorization"]))
        return (None, "ConnectionRefusedError") if body["stream"] and url.endswith("/v1/messages") else (200, "")

    outcomes = run("http://127.0.0.1:9/", "sk-master", ["memory-proxy-warmup/openai"], send=send)
    assert sorted(sent) == sorted([("http://127.0.0.1:9/v1/chat/completions", False, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/chat/completions", True, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/messages", False, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/messages", True, "Bearer sk-master")])
    line = warmup.summary(outcomes, 1.23)
    assert line.startswith("warmed LiteLLM in 1.2 s without calling a provider")
    assert "for openai (3 of 4 answered)" in line
    assert "/v1/messages (streamed, memory-proxy-warmup/openai) failed: no answer ConnectionRefusedError" in line
    assert "sk-master" not in line
