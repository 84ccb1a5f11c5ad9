"""The engine with its sockets replaced by recording in-memory transports, for fuzzing.

A real engine (parser, exchanges, attempts, pools) serves one client connection whose
bytes are handed to it in pieces, as a socket would; the upstream side is a fake whose
parser (httptools, as an upstream would use) answers each complete request it finds. No
socket and no timer is involved, so thousands of connections run per second and a
connection that does not end within a bounded number of loop iterations is a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httptools
from routes import directory
from wire import Message, _Collector

from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.server import ClientConnection
from mesh.engine.upstream import UpstreamConnection
from mesh.metrics import Metrics
from mesh.tls import PeerCheck

# Loop iterations a connection may take to end after its last byte; everything the engine
# does in between is immediate (no timer fires), so a well-behaved run needs a few dozen.
ITERATIONS = 2000
UPSTREAM_MARK = b"x-fuzz-upstream"

# Each setting changes which checks a request meets first: the defaults; small limits on
# head and body (431 and 413, chunked bodies held until whole).
ENGINES = {"defaults": {}, "small-limits": {"max_header_bytes": 1024, "max_body_bytes": 16}}


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes; closing reaches the protocol on the next iteration."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        sink: Callable[[bytes], None],
    ) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._sink = sink
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed and not self.eof_written:
            self._sink(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


@dataclass
class UpstreamSide:
    """One upstream connection as the instance sees it: its bytes, parsed as they arrive."""

    transport: FakeTransport | None = None
    received: bytearray = field(default_factory=bytearray)
    parser: _Collector = field(default_factory=lambda: _Collector(request=True))
    error: str = ""  # what the upstream's parser refused, if anything


@dataclass
class Run:
    """What one client connection did: bytes out to the client and to each upstream."""

    to_client: bytearray = field(default_factory=bytearray)
    upstreams: list[UpstreamSide] = field(default_factory=list)
    forwarded: list[Message] = field(default_factory=list)  # complete, in arrival order
    ended: bool = False  # the engine closed (or half-closed) the client connection
    errors: list[str] = field(default_factory=list)  # exceptions the event loop caught


class InProcessProxy:
    """An engine routing service `svc` to a fake upstream; `run` serves one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **settings: Any) -> None:
        self.loop = loop
        self._run: Run | None = None
        settings.setdefault("retry_attempts", 0)
        loop.set_exception_handler(self._caught)
        self.engine = loop.run_until_complete(self._engine(Settings(**settings)))
        self.engine.pools.connect = self._connect  # type: ignore[method-assign]

    async def _engine(self, settings: Settings) -> Engine:
        return Engine(
            settings, directory({"svc": [1]}, None, settings), Metrics(), strip_mesh_headers=True
        )

    def _caught(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.errors.append(f"{context.get('message')}: {context.get('exception')!r}")

    async def _connect(
        self, key: tuple[str, int], timeout: float, tls: PeerCheck | None = None
    ) -> UpstreamConnection:
        run = self._run
        assert run is not None
        conn = UpstreamConnection(key, self.engine.outbox)
        side = UpstreamSide()
        side.transport = FakeTransport(
            self.loop, conn, lambda data: self._upstream(run, side, conn, data)
        )
        run.upstreams.append(side)
        conn.connection_made(side.transport)
        return conn

    def _upstream(
        self, run: Run, side: UpstreamSide, conn: UpstreamConnection, data: bytes
    ) -> None:
        """The instance: parse what arrives, answer each complete request once, in order."""
        side.received += data
        if side.error:
            return
        parsed = side.parser
        try:
            parsed.feed(data)
        except httptools.HttpParserError as exc:
            side.error = f"{type(exc).__name__}: {exc}"
            return
        while parsed.done:
            request = parsed.done.popleft()
            run.forwarded.append(request)
            answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n%s: %d\r\n\r\n" % (
                UPSTREAM_MARK,
                len(run.forwarded),
            )
            self.loop.call_soon(_deliver, side.transport, conn, answer)

    def run(self, pieces: Sequence[bytes]) -> Run:
        """Connect, send `pieces` (each when the engine reads), half-close, wait for the end."""
        self._run = run = Run()
        try:
            self.loop.run_until_complete(self._serve(run, pieces))
        finally:
            self._run = None
        return run

    async def _serve(self, run: Run, pieces: Sequence[bytes]) -> None:
        conn = ClientConnection(self.engine)
        transport = FakeTransport(self.loop, conn, run.to_client.extend)
        conn.connection_made(transport)
        queue = [piece for piece in pieces if piece]
        eof_sent = False
        for _ in range(ITERATIONS):
            if transport.closed or transport.eof_written:
                run.ended = True
                break
            if transport.reading and queue:
                conn.data_received(queue.pop(0))
            elif transport.reading and not eof_sent:
                eof_sent = True
                if not conn.eof_received():
                    transport.close()
            await asyncio.sleep(0)
        # Whatever the outcome, nothing of this connection may linger into the next run.
        if not transport.closed:
            transport.close()
        for side in run.upstreams:
            if side.transport is not None and not side.transport.closed:
                side.transport.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)


def _deliver(transport: FakeTransport | None, conn: UpstreamConnection, data: bytes) -> None:
    if transport is not None and not transport.closed:
        conn.data_received(data)
