"""Warm LiteLLM up before the first real request: one answer per API shape and provider family.

LiteLLM imports the code of each route and provider dialect on the first request that needs
it (about 1.2 s for the first ``/v1/messages`` on a small machine). So after LiteLLM is ready,
and after every restart, the supervisor sends it one request per API shape the memory proxy
serves (``/v1/chat/completions`` and ``/v1/messages``, streamed and not) for each provider
family in the model list, and ``up`` reports healthy only after that.

None of them may reach a provider. LiteLLM 1.108 drops a client's ``mock_response`` field,
even with the master key (``_UNTRUSTED_ROOT_CONTROL_FIELDS``; tried: every such request
reached the emulator), so the generated config gets one hidden model group per family,
``memory-proxy-warmup/<family>``, whose only deployment has ``mock_response`` in its
``litellm_params``: LiteLLM answers it itself, through the same route and dialect code. The
memory proxy leaves those groups out of every ``/v1/models`` answer; calling one answers "ok".

A mock answer skips what a real provider call runs once per process (the provider's HTTP
client, response parsing, cost): the first real chat request still cost about twice the next
ones. So in binary mode the OpenAI and Anthropic families' groups call the memory proxy's canned
answers instead (``server/warmup_answers.py``, under ``ANSWERS_PREFIX``) as LiteLLM calls a
provider, with the per-run egress secret as their key; other families keep the mock answer.

This module says what is warmed; ``launcher/warmup.py`` sends it to the binary, ``sdk/backend.py``
through the Router in-process. Standard library only: the launcher imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memory_proxy.names import EGRESS_SECRET_ENV

if TYPE_CHECKING:
    from memory_proxy.config.model import Config

PREFIX = "memory-proxy-warmup/"
ANSWERS_PREFIX = "/_warmup"  # the memory proxy's canned provider answers (server/warmup_answers.py)
ANSWERED = {"openai": "/openai/v1", "anthropic": "/anthropic"}  # families whose canned answers exist
SHAPES = (("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/v1/messages", False),
          ("/v1/messages", True))
TIMEOUT = 60.0  # a warm-up answer that takes longer is reported, not waited for


def family(params: dict) -> str:
    """The provider family of a deployment: ``custom_llm_provider``, else the model's prefix."""
    model = str(params.get("model") or "")
    return str(params.get("custom_llm_provider") or (model.split("/", 1)[0] if "/" in model else model))


def families(config: Config) -> dict[str, str]:
    """Family -> the model string of its first deployment LiteLLM gets (keys set)."""
    found: dict[str, str] = {}
    for item, info in zip(config.raw.get("model_list") or [], config.models, strict=False):
        if info.missing_env or not isinstance(item, dict) or not isinstance(item.get("litellm_params"), dict):
            continue
        params = item["litellm_params"]
        found.setdefault(family(params), str(params.get("model")))
    return found


def deployments(config: Config, answers_url: str | None = None) -> list[dict]:
    """The hidden warm-up groups for the generated config: the families with canned answers
    call them at ``answers_url`` (the memory proxy's ``ANSWERS_PREFIX``), the others (and all
    without it) get LiteLLM's own mock answer."""
    groups = []
    for name, model in families(config).items():
        if answers_url and name in ANSWERED:
            params = {"model": model, "api_base": answers_url + ANSWERED[name],
                      "api_key": f"os.environ/{EGRESS_SECRET_ENV}"}
        else:
            params = {"model": model, "mock_response": "ok"}
        groups.append({"model_name": PREFIX + name, "litellm_params": params})
    return groups


def is_warmup(model: object) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def requests(groups: Iterable[str]) -> list[tuple[str, str, bool, dict]]:
    """(group, path, stream, body) of every warm-up request."""
    out = []
    for group in groups:
        for path, stream in SHAPES:
            # "no-log": LiteLLM's callbacks (the user's Langfuse, generic_api, ...) never see a warm-up
            out.append((group, path, stream, {"model": group, "max_tokens": 8, "stream": stream, "no-log": True,
                                              "messages": [{"role": "user", "content": "warm-up"}]}))
    return out


@dataclass
class Warmed:
    group: str
    path: str
    stream: bool
    status: int | None  # None: no answer
    ms: float
    error: str = ""


def summary(outcomes: list[Warmed], seconds: float) -> str:
    """One line for the supervisor's log: what was warmed, and what failed."""
    if not outcomes:
        return "warm-up: no model to warm"
    names = ", ".join(dict.fromkeys(o.group[len(PREFIX):] for o in outcomes))
    failed = [o for o in outcomes if o.status != 200]
    line = (f"warmed LiteLLM in {seconds:.1f} s without calling a provider: /v1/chat/completions and "
            f"/v1/messages, streamed and not, for {names} ({len(outcomes) - len(failed)} of {len(outcomes)} "
            "answered)")
    for o in failed:
        line += (f"; {o.path} ({'streamed' if o.stream else 'not streamed'}, {o.group}) failed: "
                 f"{o.status or 'no answer'} {o.error}".rstrip())
    return line
