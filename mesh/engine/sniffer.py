"""A listening socket speaking TLS to clients that open with a handshake, plain text to others."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from mesh import addresses
from mesh.engine.acceptor import Acceptor

# A TLS connection's first byte: the record type of a handshake (RFC 8446 §5.1).
_HANDSHAKE = 0x16


class SniffingServer(Acceptor):
    """What asyncio.Server is to Listener, for permissive mTLS: one port, both kinds.

    Each accepted connection is peeked at (MSG_PEEK: nothing is consumed) and then handed
    to the loop as a TLS or a plain connection. A client that sends nothing within
    `first_byte_timeout` is closed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        backlog: int,
        first_byte_timeout: float,
    ) -> None:
        super().__init__(
            loop, factory, sock, backlog=backlog, ssl=context, handshake_timeout=first_byte_timeout
        )
        self._context = context

    @classmethod
    async def bind(
        cls,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        backlog: int,
        first_byte_timeout: float,
    ) -> SniffingServer:
        """Bind host:port now (OSError if taken); connections are refused until start_serving,
        as asyncio.Server's are."""
        loop = asyncio.get_running_loop()
        sock = addresses.bind(host, port)
        sock.setblocking(False)
        return cls(
            loop, factory, sock, context, backlog=backlog, first_byte_timeout=first_byte_timeout
        )

    async def _open(self, conn: socket.socket) -> None:
        try:
            first = await asyncio.wait_for(self._first_byte(conn), self._timeout)
            if not first:
                raise ConnectionResetError  # closed before saying anything
            tls = first[0] == _HANDSHAKE
            await self._loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._context if tls else None,
                ssl_handshake_timeout=self._timeout if tls else None,
            )
        except (OSError, TimeoutError, asyncio.CancelledError):
            conn.close()

    async def _first_byte(self, conn: socket.socket) -> bytes:
        readable: asyncio.Future[None] = self._loop.create_future()
        fd = conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        self._loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            self._loop.remove_reader(fd)
        with contextlib.suppress(BlockingIOError):
            return conn.recv(1, socket.MSG_PEEK)
        return b"?"  # woken without data after all: let the loop's transport sort it out
