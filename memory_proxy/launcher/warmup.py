"""Send the warm-up (``config/warmup.py``) to a LiteLLM binary that just became ready.

All requests at once (their waits overlap), each from its own thread over ``http.client``:
the supervisor runs this and may import only the standard library.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from memory_proxy.config.warmup import TIMEOUT, Warmed, requests


def post(url: str, body: dict, headers: dict[str, str], timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """(status, "") of one JSON POST, its answer read to the end; (None, the error's name) without one."""
    import http.client  # here: `status` imports the supervisor, which imports this module

    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=json.dumps(body).encode(),
                     headers={"content-type": "application/json", **headers})
        answer = conn.getresponse()
        answer.read()
        return answer.status, ""  # an error body is not logged: it may quote the request's key
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__
    finally:
        conn.close()


def run(base_url: str, master_key: str, groups: Iterable[str],
        send: Callable[[str, dict, dict[str, str]], tuple[int | None, str]] = post) -> list[Warmed]:
    """Send every warm-up request to the LiteLLM at ``base_url`` at once (their waits overlap)."""
    headers = {"authorization": f"Bearer {master_key}", "anthropic-version": "2023-06-01"}
    todo = requests(groups)

    def one(item: tuple[str, str, bool, dict]) -> Warmed:
        group, path, stream, body = item
        started = time.monotonic()
        status, error = send(base_url.rstrip("/") + path, body, headers)
        return Warmed(group, path, stream, status, (time.monotonic() - started) * 1000, error)

    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        return list(pool.map(one, todo))
