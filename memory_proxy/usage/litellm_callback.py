"""The usage callback inside the LiteLLM binary: LiteLLM's half of the usage record.

Run by LiteLLM, never by the memory proxy: the generated config lists ``handler`` of this module
in ``litellm_settings.callbacks`` (``config/litellm.py``: there LiteLLM runs it for successes
and failures, sync and async calls alike), and LiteLLM loads it as it loads any custom callback
(``module.instance``; the project is on the venv's path). It is LiteLLM's ``generic_api`` logger
(batched JSON posts of each call's standard logging payload) posting to the memory proxy's
intake (``MEMORY_PROXY_USAGE_URL``, ``server/usage_intake.py``) with the per-run secret
(``MEMORY_PROXY_EGRESS_SECRET``), both set by the launcher in LiteLLM's environment only.

A subclass of its own rather than LiteLLM's ``generic_api`` by name: LiteLLM keeps one logger
per class for callbacks listed by name, so a ``generic_api`` the user lists would have been
merged with ours (their sink getting nothing, or our intake their events). For the same
reason its headers are only ours, never the user's ``GENERIC_LOGGER_HEADERS``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from memory_proxy.names import EGRESS_SECRET_ENV, USAGE_URL_ENV
from memory_proxy.server.headers import EGRESS_SECRET_HEADER


@functools.cache
def _handler() -> Any:
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger

    class UsageLogger(GenericAPILogger):
        def _get_headers(self, headers: dict | None = None) -> dict[str, str]:
            return {"Content-Type": "application/json", **(headers or {})}

    url, secret = os.environ.get(USAGE_URL_ENV), os.environ.get(EGRESS_SECRET_ENV)
    if not url or not secret:  # a LiteLLM started from the generated config by hand: no usage record
        logging.getLogger("memory_proxy").warning("the usage callback is off: %s or %s is not set", USAGE_URL_ENV,
                                                  EGRESS_SECRET_ENV)
        return CustomLogger()
    return UsageLogger(endpoint=url, headers={EGRESS_SECRET_HEADER: secret})


def __getattr__(name: str) -> Any:
    """``handler``: made on LiteLLM's first look (it needs LiteLLM's running event loop), the
    same object every time LiteLLM looks it up."""
    if name == "handler":
        return _handler()
    raise AttributeError(name)
