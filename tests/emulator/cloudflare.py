"""Cloudflare in front of Supermemory (router and Memory API): clearance cookies, and the
``error code: 1200`` refusal a caller without them gets once it has been seen."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response


class Cloudflare:
    """The cookies issued and the refusals asked for (``POST /_emulator/cloudflare``)."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()  # cf_clearance values we issued
        self.seen_first = False
        self.refuse_next = 0

    def check(self, clearance: str | None) -> tuple[bool, bool]:
        """Return (refuse, set_cookies) for a request carrying this cf_clearance."""
        valid = clearance in self.tokens
        first, self.seen_first = not self.seen_first, True
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return True, True
        refuse = not valid and not first
        return refuse, refuse or not valid

    def issue_cookies(self, response: Response) -> None:
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        for name, value in (("cf_clearance", token), ("__cf_bm", secrets.token_urlsafe(32))):
            cookie = f"{name}={value}; Path=/; Max-Age=1800; HttpOnly"
            response.raw_headers.append((b"set-cookie", cookie.encode("latin-1")))


def refusal() -> Response:
    return Response("error code: 1200", 503, headers={
        "server": "cloudflare", "content-type": "text/plain; charset=UTF-8", "cf-ray": secrets.token_hex(8)})


async def behind_cloudflare(cloudflare: Cloudflare, request: Request,
                            answer: Callable[[], Awaitable[Response]]) -> Response:
    """``answer()``, or Cloudflare's refusal, with fresh cookies where Cloudflare sets them."""
    refuse, fresh = cloudflare.check(request.cookies.get("cf_clearance"))
    response = refusal() if refuse else await answer()
    if fresh:
        cloudflare.issue_cookies(response)
    return response
