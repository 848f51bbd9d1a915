"""Run the memory proxy alone: ``python -m memory_proxy --config ... --state-dir ...``.

``start_proxies.py up`` starts it this way; the per-run egress secret arrives in the
environment (``MEMORY_PROXY_EGRESS_SECRET``), never on the command line.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
from pathlib import Path

import uvicorn

from . import log_format
from .app import create_app
from .config import ConfigError, is_loopback, load_config
from .http_protocol import protocol_class
from .litellm_config import EGRESS_SECRET_ENV
from .state import StateDir, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory_proxy", description=__doc__)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--litellm-url", default=None, help="default: http://127.0.0.1:<memory_proxy.litellm_port>")
    parser.add_argument("--host", default=None, help="default: memory_proxy.host")
    parser.add_argument("--port", type=int, default=None, help="default: memory_proxy.port")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    proxy = config.proxy
    log_format.setup(proxy.log_format)
    host = args.host or proxy.host
    if not is_loopback(host) and not proxy.api_keys:
        print(f"refusing to listen on {host}: set memory_proxy.api_keys (front-door keys) first", file=sys.stderr)
        return 2
    state = StateDir(args.state_dir or default_state_dir()).ensure()
    app = create_app(
        config,
        litellm_url=args.litellm_url or f"http://127.0.0.1:{proxy.litellm_port}",
        master_key=state.master_key(),
        egress_secret=os.environ.get(EGRESS_SECRET_ENV) or secrets.token_urlsafe(32),
        state_dir=state.root,
    )
    # Everything loaded so far lives as long as the process: keep it out of the cyclic garbage
    # collector's full passes (tens of ms each, every few thousand requests).
    gc.freeze()
    # The default young-generation threshold stays: 20,000 instead of 700 saved about 6 % of the
    # CPU of a lone client's request but, with 20 clients in flight, each pass had many more live
    # objects to walk and p99/p50 went from about 2.1 to 3.5.
    # loop/http "auto": uvloop and httptools (dependencies), the fastest uvicorn has, where installable.
    # No X-Forwarded-* rewriting: the proxy is the front door. IDEs keep their connections open.
    uvicorn.run(app, host=host, port=args.port or proxy.port, log_level="warning",
                access_log=False, server_header=False, timeout_graceful_shutdown=5,
                loop="auto", proxy_headers=False, timeout_keep_alive=75,
                # uvicorn's parser (httptools when installed) with JSON errors and a bounded
                # request head; no WebSocket upgrades (nothing here serves them).
                http=protocol_class(proxy.max_header_bytes), ws="none",
                h11_max_incomplete_event_size=proxy.max_header_bytes + 16 * 1024,
                **log_format.uvicorn_settings(proxy.log_format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
