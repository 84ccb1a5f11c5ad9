"""A bare TCP byte relay on asyncio + uvloop: the rough ceiling for any asyncio proxy.

No HTTP parsing, no pools, no routing: every client connection gets an upstream connection
of its own and bytes are copied both ways, with back-pressure. Whatever an asyncio HTTP
proxy does beyond this costs throughput; the benchmark's "passthrough" row shows how much
room a Python design has at best.

    python -m bench.passthrough --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from typing import cast

import uvloop


class Side(asyncio.Protocol):
    """One end of a relay; what it reads is written to `peer`, its other end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        # Pass the half-close on and keep the other direction open.
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and peer.can_write_eof():
            peer.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # The peer cannot keep up: stop reading here until it drains.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Client(Side):
    """A client connection; what it sends before its upstream connection is open is held."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop may deliver a first read even if reading is paused here, hence `early`;
        # pausing still bounds what a client can pile up before the upstream answers.
        cast(asyncio.Transport, transport).pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            super().data_received(data)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_connection(Side, *self.upstream)
        except OSError:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.transport is None or self.transport.is_closing():  # the client left meanwhile
            if server.transport is not None:
                server.transport.close()
            return
        server.peer, self.peer = self, server
        if self.early and server.transport is not None:
            server.transport.write(b"".join(self.early))
            self.early.clear()
        self.transport.resume_reading()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(lambda: Client(upstream), *listen, backlog=4096)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to accept on")
    parser.add_argument("--upstream", required=True, help="host:port to relay to")
    args = parser.parse_args()
    uvloop.run(serve(_address(args.listen), _address(args.upstream)))


if __name__ == "__main__":
    main()
