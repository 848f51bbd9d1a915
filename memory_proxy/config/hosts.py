"""Host names and addresses: which are loopback, and how a local client reaches a bound socket.

Standard library only: the launcher's ``status`` imports it."""

from __future__ import annotations

import ipaddress


def connect_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def url_host(host: str) -> str:
    """``host`` as it goes into a URL: a local client's address, IPv6 in brackets."""
    host = connect_host(host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host



def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
