"""A listening socket that accepts one connection per loop turn, for a socket workers share."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from mesh.tasks import hold


class Acceptor:
    """What asyncio.Server is to Listener, for the gateway's workers on their supervisor's socket.

    The event loops accept every pending connection when woken, so on a socket shared by
    processes the first worker awake takes a whole burst: 100 of 128 connections went to
    one of two workers. Accepting one per loop turn leaves the next to whichever worker
    comes round first, and a busy worker comes round later, so it takes fewer.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        *,
        backlog: int,
        ssl: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sock = sock
        self._ssl = ssl
        self._timeout = handshake_timeout
        self._backlog = backlog
        self._accepting: asyncio.Task[None] | None = None
        self._opening: set[asyncio.Task[None]] = set()
        self.sockets = [sock]

    def is_serving(self) -> bool:
        return self._accepting is not None and not self._accepting.done()

    async def start_serving(self) -> None:
        if self._accepting is None:
            self._sock.setblocking(False)
            self._sock.listen(self._backlog)
            self._accepting = self._loop.create_task(self._accept(), name="accept")

    def close(self) -> None:
        """Stop accepting; connections already handed over are their owner's to end."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in self._opening:
            task.cancel()
        self._sock.close()

    async def _accept(self) -> None:
        while True:
            try:
                conn, _ = await self._loop.sock_accept(self._sock)
            except OSError:
                await asyncio.sleep(0.05)  # out of descriptors, or the peer gave up: go on
                continue
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hold(self._opening, self._open(conn))
            # sock_accept returns at once while connections are pending: without this
            # turn of the loop, this worker would take them all.
            await asyncio.sleep(0)

    async def _open(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._timeout
            )
        except (OSError, TimeoutError, asyncio.CancelledError):
            conn.close()
