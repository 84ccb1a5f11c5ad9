"""The local datagram socket HAProxy sends its log lines to, read on the gateway's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from mesh.haproxy.log_lines import Request, ServerDown, parse

log = logging.getLogger(__name__)

# Lines come in bursts at the request rate; a datagram socket drops what its buffer cannot
# hold (HAProxy never waits on us), so the buffer covers a few hundred milliseconds of a
# busy proxy (about 200 bytes a line).
RECEIVE_BUFFER = 8 * 1024 * 1024

Handler = Callable[[Request | ServerDown], None]


class LogSink(asyncio.DatagramProtocol):
    """Hands each line HAProxy sends to `handle`; counts the ones that are not ours."""

    def __init__(self, path: str, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._transport: asyncio.DatagramTransport | None = None
        self.lines = 0
        self.unparsed = 0  # malformed, or notices the gateway does not act on

    async def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a gateway that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(self.path)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.lines += 1
        line = parse(data.decode("utf-8", "replace"))
        if line is None:
            self.unparsed += 1
            log.debug("haproxy: %s", data[:200])
            return
        self._handle(line)

    def error_received(self, exc: Exception) -> None:
        log.warning("haproxy log socket: %s", exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
