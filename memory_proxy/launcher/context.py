"""What every command gets: the config file and the state folder of one installation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memory_proxy.launcher.bootstrap import ROOT
from memory_proxy.state import StateDir, default_state_dir

LAUNCHER = ROOT / "start_proxies.py"
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"


@dataclass(frozen=True)
class Context:
    config: Path
    state: StateDir

    @property
    def command(self) -> str:
        """How to call the launcher again for this same installation."""
        launcher = LAUNCHER.name if Path.cwd() == ROOT else str(LAUNCHER)
        parts = ["python3", launcher]
        if self.config != DEFAULT_CONFIG:
            parts += ["--config", str(self.config)]
        if self.state.root != default_state_dir().expanduser().resolve():
            parts += ["--state-dir", str(self.state.root)]
        import shlex  # here: most commands never print one

        return " ".join(shlex.quote(p) for p in parts)
