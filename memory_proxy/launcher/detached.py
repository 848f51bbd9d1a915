"""``up --detach``: the supervisor as a background process."""

from __future__ import annotations

from pathlib import Path

from memory_proxy.launcher.record import remove_record
from memory_proxy.launcher.supervisor import Interrupted, LaunchError, Supervisor
from memory_proxy.state import StateDir


def run_detached(config_path: Path, state: StateDir, litellm_url: str | None,
                 startup_timeout: float, backend: str = "binary", sdk_port: int | None = None) -> int:
    """The body of the hidden ``_supervise`` command that ``up --detach`` starts in the background."""
    sup = Supervisor(config_path, state, detached=True, litellm_url=litellm_url, startup_timeout=startup_timeout,
                     backend=backend, sdk_port=sdk_port)
    sup.install_signal_handlers(hangup_stops=False)
    try:
        sup.start()
    except LaunchError as exc:
        sup.fail(exc)
        return 1
    except Interrupted:
        sup.shutdown()
        remove_record(state)
        return 130
    except BaseException as exc:
        sup.fail(LaunchError(f"the supervisor crashed: {type(exc).__name__}: {exc}"))
        raise
    try:
        sup.monitor()
    finally:
        sup.shutdown()
        remove_record(state)
        sup.event("stopped")
    return 0
