"""Last: grep everything this suite made the processes say for every key it set.

Keys: the provider keys, the Supermemory key, each LiteLLM master key, the front-door key and
the per-run egress secret. Places: every log file and state file of every state folder the
suite used (both launcher stacks, the direct memory proxies), ``status`` and ``check``
(human and ``--json``), ``/health``, ``/memory-routing/info`` and every error body the
tests collected. The master key file and the cookie jar are mode 0600.
"""

from __future__ import annotations

import stat

import httpx

from .conftest import CHAT, FRONT_DOOR_KEY, KEYS, SECRETS, SEEN, STATE_DIRS, bad_input, seen


def egress_secret(stack) -> str:
    """The per-run secret, from the environment the launcher gave the memory proxy."""
    return stack.process("memory_proxy").environ()["MEMORY_PROXY_EGRESS_SECRET"]


def test_no_key_appears_in_any_output(stack):
    secrets = dict(SECRETS)
    secrets["MEMORY_PROXY_EGRESS_SECRET (stack)"] = egress_secret(stack)
    secrets["LITELLM_MASTER_KEY (stack)"] = stack.master_key()
    # Answers a client can provoke while offering keys of all kinds.
    offered = {"authorization": f"Bearer {KEYS['OPENAI_API_KEY']}", "x-api-key": KEYS["ANTHROPIC_API_KEY"],
               "x-supermemory-api-key": KEYS["SUPERMEMORY_API_KEY"], "api-key": FRONT_DOOR_KEY,
               "x-memory-proxy-egress-secret": secrets["MEMORY_PROXY_EGRESS_SECRET (stack)"][:-1] + "x"}
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30, headers=offered) as c:
        for where, answer in (
            ("/health", c.get("/health")),
            ("/memory-routing/info", c.get("/memory-routing/info")),
            ("/scope/p/memory-routing/info", c.get("/scope/p/memory-routing/info")),
            ("400 bad id", c.post(CHAT, json={}, headers={"x-memory-user-id": "bad id"})),
            ("400 bad JSON", c.post(CHAT, content=b"{", headers={"content-type": "application/json"})),
            ("LiteLLM 400", c.post(CHAT, json={"model": "no-such-model", "messages": []})),
            ("LiteLLM 404", c.get("/v1/nope")),
            ("egress 403", c.post("/_egress/v3/x/v1/chat/completions", json={})),
            ("model listing", c.get("/v1/models")),
            ("upstream 401 detail", c.post(CHAT, json={"model": "needs-a-key", "messages": []})),
        ):
            seen(where, "\n".join(f"{k}: {v}" for k, v in answer.headers.items()) + "\n" + answer.text)
            bad_input("request offering keys of every kind")
    for args in (("status",), ("status", "--json"), ("check",), ("check", "--json"), ("logs", "-n", "2000")):
        result = stack.cli(*args, timeout=120)
        seen(" ".join(args), result.stdout + result.stderr)
    texts = list(SEEN)
    for state in STATE_DIRS:
        if not state.exists():
            continue
        for path in state.rglob("*"):
            if path.is_file() and path.name != "litellm_master_key":
                texts.append((str(path), path.read_text(errors="replace")))
    assert len(texts) > 20, "the suite collected too little to grep"
    leaks = [f"{name} in {where}" for name, value in secrets.items() for where, text in texts
             if value and value in text]
    assert not leaks, "\n".join(leaks[:20])
    # A shortened form (LiteLLM prints keys as sk-...abcd in places) must not show either.
    partial = [f"{name} (middle part) in {where}" for name, value in secrets.items() for where, text in texts
               if len(value) >= 24 and value[6:-4] in text]
    assert not partial, "\n".join(partial[:20])


def test_secret_files_are_private(stack):
    state = stack.state
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30) as c:  # the jar exists after one
        answer = c.post(CHAT, json={"model": "memory/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 200, answer.text
    assert stat.S_IMODE((state / "litellm_master_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "supermemory_cookies.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "processes.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0, oct(state.stat().st_mode)


def test_the_memory_proxy_survived_it_all_as_one_process(stack):
    """Every fault and bad input of the session went through this one memory proxy process."""
    assert stack.pid("memory_proxy") == stack.first_proxy_pid
    log = (stack.state / "logs" / "memory.log").read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    restarts = stack.status()["processes"]["memory_proxy"].get("restarts")
    assert not restarts, restarts
