"""Ports: whether one can be bound, and who holds it when not."""

from __future__ import annotations

import errno
import socket

import psutil


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a server could not bind ``host:port`` (uvicorn binds with SO_REUSEADDR too), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as exc:
        return exc
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind ``host:port``."""
    return bind_error(port, host) is not None


def describe_process(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()) or proc.name()
    except (psutil.Error, OSError):
        return f"pid {pid}"
    if len(cmd) > 100:
        cmd = cmd[:97] + "..."
    return f"pid {pid} ({cmd})"


def port_holder(port: int) -> str | None:
    """Which process listens on ``port``, as ``pid N (command)``; None if it cannot be told."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                return describe_process(conn.pid)
            return f"a process of another user (try: sudo ss -ltnp 'sport = :{port}')"
    return None


def port_problem(port: int, host: str, what: str) -> str | None:
    error = bind_error(port, "127.0.0.1" if host in ("", "localhost") else host)
    if error is None:
        return None
    if error.errno != errno.EADDRINUSE:  # e.g. an address this machine does not have
        return f"cannot listen on {host}:{port} ({what}): {error.strerror or error}"
    holder = port_holder(port)
    by = f"taken by {holder}" if holder else "taken by another process"
    return f"port {port} ({what}) is {by}; stop it or choose another port in the config"
