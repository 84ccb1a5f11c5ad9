"""The listening socket of a proxy: bind, accept, and a graceful stop through its engine."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
from collections.abc import Callable
from typing import Any

from mesh.engine.acceptor import Acceptor
from mesh.engine.engine import Engine
from mesh.engine.heap import keep_freed_heap
from mesh.engine.server import ClientConnection
from mesh.engine.sniffer import SniffingServer

# Connections the kernel queues before the engine accepts them (bursts of new clients).
BACKLOG = 2048
# A TLS client has this long to send its first byte and finish its handshake: until then
# it holds a socket that no idle timeout sees (asyncio's default is 60 s, a cheap way to
# exhaust descriptors).
TLS_HANDSHAKE_TIMEOUT = 10.0


class Listener:
    """Accepts client connections for one engine; `stop` drains them gracefully.

    `sock`: a socket bound (and listening) already, e.g. inherited from the gateway's
    supervisor, instead of binding host:port here. `ssl`: TLS is terminated here, with
    this context (reloading its certificate in place reaches new handshakes); with
    `plain_too` as well, clients that do not open with a TLS handshake are served in plain
    text on the same port (permissive mTLS). `connection` makes each connection's
    protocol (an agent's inbound one adds to it).
    """

    def __init__(
        self,
        engine: Engine,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        ssl: ssl.SSLContext | None = None,
        plain_too: bool = False,
        connection: Callable[[Engine], ClientConnection] | None = None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.sock = sock
        self.ssl = ssl
        self.plain_too = plain_too
        self.connection = connection
        self._server: asyncio.Server | Acceptor | None = None

    async def start(self, *, serve: bool = True) -> None:
        """Bind (a taken port fails here); with `serve=False`, accept only after serve()."""
        proto = b"http" if self.ssl is None else b"https"
        engine = self.engine
        connection = self.connection or (lambda engine: ClientConnection(engine, proto=proto))
        if self.ssl is not None and self.plain_too:
            self._server = await SniffingServer.bind(
                lambda: connection(engine),
                self.host,
                self.port,
                self.ssl,
                backlog=BACKLOG,
                first_byte_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            if serve:
                await self._server.start_serving()
        elif self.sock is not None:  # shared with the other workers: see Acceptor
            self._server = Acceptor(
                engine.loop,
                lambda: connection(engine),
                self.sock,
                backlog=BACKLOG,
                ssl=self.ssl,
                handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.ssl is not None else None,
            )
            if serve:
                await self._server.start_serving()
        else:
            options: dict[str, Any] = {}
            if self.ssl is not None:
                options = {"ssl": self.ssl, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT}
            self._server = await engine.loop.create_server(
                lambda: connection(engine),
                self.host,
                self.port,
                **options,
                backlog=BACKLOG,
                start_serving=serve,
            )
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.port = sock.getsockname()[1]
        engine.start_sweeping()

    @property
    def serving(self) -> bool:
        """True while it accepts connections: after serve(), before stop()."""
        return self._server is not None and self._server.is_serving()

    async def serve(self) -> None:
        # What start-up built lives as long as the process: move it out of the collector's
        # sight, so that full collections (pauses of milliseconds, seen in the p99) stay
        # small.
        gc.collect()
        gc.freeze()
        keep_freed_heap()
        if self._server is not None:
            await self._server.start_serving()

    def close(self) -> None:
        """Stop accepting; connections already accepted are the engine's to drain."""
        if self._server is not None:
            self._server.close()

    async def stop(self, deadline: float) -> int:
        """Stop accepting, then drain the engine (see Engine.drain); connections cut."""
        self.close()
        return await self.engine.drain(deadline)
