"""Ports for a process and its children: a free one, and whether a given one can be bound."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from mesh.addresses import parse_hostport
from mesh.errors import PortUnavailable

_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now, never the same one twice in this process.

    The port is released as soon as it is handed out, so the kernel may offer it again
    before the child meant to bind it does: remembering them keeps two children of one
    parent from being given the same port.
    """
    while True:
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0 = any free port) but not listening: connections are
    refused until it serves, while nobody else can take the port meanwhile."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As the servers bind: a closed connection in TIME_WAIT is no obstacle. Without
        # SO_REUSEPORT, any listener already there counts as taken, even one that set it;
        # and none of ours sets it, so no stranger can join one of our ports either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


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
