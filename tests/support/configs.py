"""Config files for the tests: one builder, ``build_config``, the config of the emulator
stacks (``config_text``) that the e2e, fault, parity and observability tests share, and the
launcher tests' (``launcher_config``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

OPENAI_KEY = "os.environ/OPENAI_API_KEY"
ANTHROPIC_KEY = "os.environ/ANTHROPIC_API_KEY"
SUPERMEMORY_KEY = "os.environ/SUPERMEMORY_API_KEY"
# (header, pattern, user id): the clients the stacks tell apart, first match wins.
CLIENT_PATTERNS = (
    ("user-agent", "^OpenAIClientImpl/Java", "pycharm-ai"),
    ("user-agent", "^claude-cli/", "claude-cli"),
    ("user-agent", "^(Async)?OpenAI/Python", "openai-python"),
    ("user-agent", "^(Async)?Anthropic/Python", "anthropic-python"),
    ("user-agent", "^curl/", "curl"),
)


def model(name: str, litellm_model: str, api_base: str, api_key: str = OPENAI_KEY) -> str:
    """One ``model_list`` entry."""
    return (f"  - model_name: {name}\n"
            f'    litellm_params: {{model: {litellm_model}, api_base: "{api_base}", api_key: {api_key}}}\n')


def _value(value: object) -> str:
    return format(value, "g") if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def build_config(models: Iterable[str], *, patterns: Iterable[tuple[str, str, str]] = (),
                 custom_header: str | None = None, default_user_id: str | None = None,
                 litellm_settings: str | None = None, proxy: Mapping[str, object] | None = None,
                 supermemory: Mapping[str, object] | None = None, extra: str = "") -> str:
    """A config file: ``models`` (``model(...)`` entries), ``litellm_settings`` (its value, flow
    style), ``user_id_mappings`` from ``custom_header``, ``patterns`` and ``default_user_id``,
    then ``memory_proxy`` with the ``proxy`` keys, its ``supermemory`` section, and ``extra``:
    more lines as they are (under ``memory_proxy`` when indented, else new sections)."""
    text = "\nmodel_list:\n" + "".join(models)
    if litellm_settings is not None:
        text += f"litellm_settings: {litellm_settings}\n"
    patterns = list(patterns)
    if custom_header or patterns or default_user_id:
        text += "user_id_mappings:\n"
        if custom_header:
            text += f"  custom_header: {custom_header}\n"
        if patterns:
            text += "  header_patterns:\n" + "".join(
                f"    - {{header: {header}, pattern: '{pattern}', user_id: {user_id}}}\n"
                for header, pattern, user_id in patterns)
        if default_user_id:
            text += f"  default_user_id: {default_user_id}\n"
    if proxy or supermemory:
        text += "memory_proxy:\n" + "".join(f"  {key}: {_value(value)}\n" for key, value in (proxy or {}).items())
        if supermemory:
            text += "  supermemory:\n" + "".join(f"    {key}: {_value(value)}\n" for key, value in supermemory.items())
    return text + extra


def launcher_config(port: int, litellm_port: int) -> str:
    """A config for the launcher alone: one model (its key ``LAUNCHER_TEST_KEY`` never set), one
    pattern, the two ports."""
    return build_config([model("plain", "openai/x", "http://127.0.0.1:9/v1", "os.environ/LAUNCHER_TEST_KEY")],
                        patterns=[("user-agent", "^claude-cli/", "claude-cli")],
                        proxy={"port": port, "litellm_port": litellm_port})


def config_text(provider: int, supermemory: int, proxy_port: int, litellm_port: int, extra: str = "", *,
                models: Callable[[str, str], Iterable[str]] | None = None, read_timeout: float = 60,
                total_timeout: float | None = None, startup_wait: float = 120) -> str:
    """The emulator stacks' config: four models on the emulator (two Supermemory-backed) and one
    whose key is never set, then ``models(a, b)`` (more ``model(...)`` entries; ``a`` is the
    provider URL and ``b`` Supermemory's); ``extra`` lines go under ``memory_proxy``.
    ``startup_wait``: a LiteLLM restart takes 14-20 s on an idle machine, far more on a loaded
    one, and requests sent meanwhile must wait for it rather than get a 503."""
    a, b = f"http://127.0.0.1:{provider}", f"http://127.0.0.1:{supermemory}"
    timeouts = f"connect: 2, read: {read_timeout:g}" + (f", total: {total_timeout:g}" if total_timeout else "")
    return build_config(
        [model("gpt-4o-mini", "openai/gpt-4o-mini", f"{a}/v1"),
         model("claude-3-5-haiku-latest", "anthropic/claude-3-5-haiku-latest", a, ANTHROPIC_KEY),
         model("memory/gpt-4o-mini", "openai/gpt-4o-mini", f"{b}/v3/{a}/v1"),
         model("claude-sonnet-4-5", "anthropic/claude-3-5-haiku-latest", f"{b}/v3/{a}", ANTHROPIC_KEY),
         model("needs-a-key", "openai/gpt-4o", f"{a}/v1", "os.environ/E2E_NEVER_SET_KEY"),
         *(models(a, b) if models else ())],
        custom_header="x-memory-user-id", patterns=CLIENT_PATTERNS, default_user_id="default-dev",
        proxy={"port": proxy_port, "litellm_port": litellm_port, "startup_wait": startup_wait,
               "timeouts": f"{{{timeouts}}}"},
        supermemory={"base_url": b, "api_key": SUPERMEMORY_KEY, "cloudflare_retry_delay": 0.1}, extra=extra)
