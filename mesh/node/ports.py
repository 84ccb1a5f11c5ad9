"""Ports for a process and its children: a free one, and whether a given one can be bound."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from mesh.addresses import bind, parse_hostport
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
