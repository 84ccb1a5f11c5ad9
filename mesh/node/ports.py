"""Ports for a process and its children: a free one, and whether a given one can be bound."""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

from mesh.addresses import bind, parse_hostport
from mesh.errors import PortUnavailable

_GIVEN: set[int] = set()
# Ports below the kernel's ephemeral range are never handed out as the local end of an
# outgoing connection, so a port chosen there stays free until the child binds it; one
# chosen by bind(0) can be taken meanwhile by any process's connect() (seen in CI).
_LOWEST = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_random = random.SystemRandom()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now, never the same one twice in this process.

    It lies below the ephemeral range where the system has one, so that no outgoing
    connection takes it before the child meant to bind it does; remembering them keeps
    two children of one parent from being given the same port.
    """
    below = _ephemeral_start()
    while True:
        port = _random.randrange(_LOWEST, below) if below > _LOWEST + 1000 else _any_port(host)
        if port not in _GIVEN and _bindable(host, port):
            _GIVEN.add(port)
            return port


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _any_port(host: str) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _bindable(host: str, port: int) -> bool:
    try:
        bind(host, port).close()
    except OSError:
        return False
    return True


def check_bindable(address: str, what: str) -> None:
    """Raise PortUnavailable unless a listener could bind `address` now.

    `what` names the flag for the message.
    """
    host, port = parse_hostport(address)
    if port == 0:
        return
    with binding(address, what):
        bind(host, port).close()


@contextlib.contextmanager
def binding(address: str, what: str) -> Iterator[None]:
    """Binding `address`: an OSError becomes PortUnavailable, one line naming both."""
    try:
        yield
    except OSError as exc:
        # From errno alone: asyncio's bind errors repeat the address in their own words.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise PortUnavailable(address, what, reason.lower()) from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
