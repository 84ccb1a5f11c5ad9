"""One parsed client request: its head, its framing, and its body as it arrives."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mesh.engine.headers import Header

BodySink = Callable[[bytes], None]


class Request:
    """Filled by the client connection's parser; drained by the exchange forwarding it."""

    __slots__ = (
        "body_seen",
        "buffered",
        "chunked",
        "client",
        "complete",
        "content_length",
        "end_sink",
        "expect_continue",
        "headers",
        "host",
        "keep_alive",
        "method",
        "pending",
        "sink",
        "target",
        "trailers",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[Header],
        *,
        client: str,
        keep_alive: bool,
        upgrade: bool,
        chunked: bool,
        content_length: int | None,
        host: bytes,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # b"1.1" or b"1.0"
        self.headers = headers
        self.client = client  # peer address, for x-forwarded-for
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.chunked = chunked
        self.content_length = content_length
        self.host = host
        self.expect_continue = expect_continue
        self.trailers: list[Header] = []
        self.pending: deque[bytes] = deque()  # body received before anyone could take it
        self.buffered = 0  # bytes in `pending`
        self.body_seen = 0  # body bytes received so far
        self.complete = False  # the whole body has arrived
        self.sink: BodySink | None = None
        self.end_sink: Callable[[], None] | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def feed(self, chunk: bytes) -> None:
        self.body_seen += len(chunk)
        if self.sink is not None:
            self.sink(chunk)
        else:
            self.pending.append(chunk)
            self.buffered += len(chunk)

    def finish(self) -> None:
        self.complete = True
        if self.end_sink is not None:
            self.end_sink()

    def drain_to(self, sink: BodySink, end: Callable[[], None]) -> None:
        """Hand what was buffered to `sink`, then stream straight to it; `end` at the end."""
        while self.pending:
            sink(self.pending.popleft())
        self.buffered = 0
        self.sink = sink
        self.end_sink = end
        if self.complete:
            end()

    def discard(self) -> None:
        """Nobody will forward this body any more: drop what is buffered and what comes."""
        self.pending.clear()
        self.buffered = 0
        self.sink = _drop
        self.end_sink = None


def _drop(chunk: bytes) -> None:
    """A body sink that forgets what it is given."""
