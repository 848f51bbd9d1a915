"""What the tests share, one of each:

- ``ports``: a free port, whether a port is taken;
- ``readiness``: waiting for a condition or for an HTTP endpoint to answer;
- ``servers``: ASGI apps served in this process (a thread each), raw HTTP on a socket;
- ``configs``: the one builder of config files, and the emulator stack's config;
- ``sinks``: receivers for what goes out: an OTLP/HTTP trace collector, a ``generic_api`` sink;
- ``stacks``: the processes: the emulator, a memory proxy, a launcher stack (``up --detach``),
  both backends from one config, and the memory proxy in this process in front of the emulator;
- ``postgres``: a throw-away PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``) for the usage store.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
LAUNCHER = ROOT / "start_proxies.py"
