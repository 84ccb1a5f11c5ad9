"""Helpers shared by every test tier: the loopback-only socket rule."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class NonLoopbackSocket(RuntimeError):
    """A test tried to bind or connect outside 127.0.0.0/8 (or ::1).

    Not an OSError on purpose: code that retries on connection errors must not swallow it.
    """


def is_loopback(host: str, *, binding: bool) -> bool:
    """True for a loopback address; a wildcard ('' or 0.0.0.0) is refused for binds."""
    if host in LOOPBACK_NAMES:
        return True
    if binding and host in ("", "0.0.0.0", "::"):
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(sock: socket.socket, address: Any, *, binding: bool) -> None:
    """Raise NonLoopbackSocket unless `address` (for an IP socket) is on loopback."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets, netlink: nothing leaves the machine
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str) or not is_loopback(host, binding=binding):
        verb = "bind to" if binding else "connect to"
        raise NonLoopbackSocket(f"tests may only {verb} 127.0.0.0/8 or ::1, not {address!r}")
