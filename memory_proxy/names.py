"""Names shared by every process: environment variables, LiteLLM's probes and the processes themselves.

A process has one name, used by ``status``, ``logs``, the process record (``processes.json``)
and the launcher's messages. Its log file keeps its older short name (``LOG_FILES``): the
state folder's files stay where they were.
"""

from __future__ import annotations

# --- environment variables ---------------------------------------------------------------
STATE_DIR_ENV = "MEMORY_PROXY_STATE_DIR"  # the state folder (default: ~/.local/state/litellm-memory-proxy)
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # LiteLLM's master key (default: generated once, kept in the state folder)
EGRESS_SECRET_ENV = "MEMORY_PROXY_EGRESS_SECRET"  # per run: LiteLLM -> egress and usage intake
USAGE_URL_ENV = "MEMORY_PROXY_USAGE_URL"  # where LiteLLM's usage callback posts (usage/litellm_callback.py)
LITELLM_BINARY_ENV = "MEMORY_PROXY_LITELLM"  # the `litellm` executable, when not the venv's

# --- LiteLLM's probes (the supervisor asks the first, the memory proxy's /health the second) --
LITELLM_ALIVE_PATH = "/health/liveliness"
LITELLM_READY_PATH = "/health/readiness"

# --- the memory proxy's pages (same origin only: a listed CORS origin does not open them) ---
UI_PREFIX = "/ui"

# --- processes ---------------------------------------------------------------------------
LITELLM = "litellm"
MEMORY_PROXY = "memory_proxy"
MEMORY_PROXY_SDK = "memory_proxy_sdk"  # the SDK-backed memory proxy beside the binary one (backend "both")
SUPERVISOR = "supervisor"
PROCESSES = (LITELLM, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR)
LOG_FILES = {LITELLM: "litellm", MEMORY_PROXY: "memory", MEMORY_PROXY_SDK: "memory_sdk", SUPERVISOR: "supervisor"}
LOG_ALIASES = {"memory": MEMORY_PROXY, "memory_sdk": MEMORY_PROXY_SDK}  # `logs memory`, as before

# --- backends (`up --backend`, also spelled `--mode`; the record's "backend") ------------
BACKENDS = ("binary", "sdk", "both")
