"""What `up` prints once everything is healthy: where each typical client should point, and
which memory id it will get there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory_proxy.config.hosts import url_host
from memory_proxy.launcher.term import out
from memory_proxy.names import LITELLM, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR

if TYPE_CHECKING:
    from memory_proxy.config.model import Config

# Typical clients, the headers they send, and how to point each at the proxy ({base} = proxy URL).
CLIENTS: list[tuple[str, dict[str, str], str]] = [
    ("PyCharm AI Assistant", {"user-agent": "OpenAIClientImpl/Java unknown"},
     "OpenAI-compatible service, URL {base}/v1"),
    ("Claude Code", {"user-agent": "claude-cli/2.0.14 (external, cli)"}, "ANTHROPIC_BASE_URL={base}"),
    ("OpenAI Python SDK", {"user-agent": "OpenAI/Python 1.0.0"}, 'OpenAI(base_url="{base}/v1")'),
    ("Anthropic Python SDK", {"user-agent": "Anthropic/Python 0.40.0"}, 'Anthropic(base_url="{base}")'),
    ("curl", {"user-agent": "curl/8.5.0"}, "curl {base}/v1/chat/completions"),
]


def proxy_base(config: Config) -> str:
    return f"http://{url_host(config.proxy.host)}:{config.proxy.port}"


def client_hints(config: Config) -> list[dict[str, str]]:
    """How to point each typical client at the proxy and which memory id it will get."""
    from memory_proxy.server.routing import resolve

    base = proxy_base(config)
    hints = []
    for client, headers, setting in CLIENTS:
        resolution = resolve(config.user_id_mappings, headers, "/v1/chat/completions")
        hints.append({"client": client, "setting": setting.format(base=base), "user_id": resolution.user_id,
                      "reason": resolution.detail})
    return hints


def backend_line(record: dict | None) -> str:
    record = record or {}
    backend = record.get("backend") or "binary"
    procs = record.get("processes", {})
    if backend == "sdk":
        return "backend sdk: LiteLLM's Router runs inside the memory proxy (no litellm process)"
    if backend == "both":
        sdk = procs.get(MEMORY_PROXY_SDK, {})
        return (f"backend both: binary-backed on {record.get('memory_proxy_url')}, "
                f"SDK-backed on {sdk.get('url')} (pid {sdk.get('pid')})")
    return "backend binary: the litellm binary behind the memory proxy"


def print_hints(config: Config, record: dict | None, command: str = "python3 start_proxies.py") -> None:
    base = proxy_base(config)
    procs = (record or {}).get("processes", {})
    pids = ", ".join(f"{name} {procs[name]['pid']}" for name in (MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM, SUPERVISOR)
                     if procs.get(name, {}).get("pid"))
    litellm = (record or {}).get("litellm_url") or f"http://127.0.0.1:{config.proxy.litellm_port}"
    if (record or {}).get("backend") == "sdk":
        litellm = "in-process (SDK mode)"
    out.line(("✔ ", "bold green"), (f"LiteLLM Memory Proxy is up on {base}", "bold"),
             f"  (LiteLLM at {litellm}; pids: {pids})")
    out.line(backend_line(record))
    out.line()
    out.line("Point each client at the memory proxy:")
    rows = [(h["client"], h["setting"], h["user_id"]) for h in client_hints(config)]
    rows.append(("Any one project", f"header {config.user_id_mappings.custom_header}: <id>, or base URL "
                                    f"{base}/scope/<id>/v1", "<id>"))
    width = max(len(r[0]) for r in rows) + 2
    setting_width = max(len(r[1]) for r in rows) + 2
    for client, setting, user_id in rows:
        out.line(("  " + client.ljust(width), "bold"), setting.ljust(setting_width), "memory id: ", (user_id, "cyan"))
    key_note = ("one of memory_proxy.api_keys" if config.proxy.api_keys
                else "any value (the proxy sends LiteLLM's own key)")
    out.line(f"API key in the client: {key_note}")
    backed = config.supermemory_groups
    missing = config.missing_keys()
    ordinary = sorted({m.model_name for m in config.models if not m.supermemory_backed} - set(missing))
    out.line(f"Models with memory: {', '.join(g for g in backed if g not in missing) or '(none)'}; "
             f"without memory: {', '.join(ordinary) or '(none)'}"
             + (f"; disabled (missing keys): {', '.join(missing)}" if missing else ""))
    if config.proxy.usage.enabled:
        out.line(f"Usage: {base}/ui/ (dashboard) or {command} stats")
    out.line(f"Logs: {command} logs -f\nStatus: {command} status\nStop: {command} down")
