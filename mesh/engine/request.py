"""One parsed client request: its head, its framing (checked), and its body as it arrives."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mesh.errors import BadRequest

Header = tuple[bytes, bytes]  # (name, value) as received: names keep their case
BodySink = Callable[[bytes], None]


class Request:
    """Filled by the client connection's parser; drained by the exchange forwarding it.

    The head is checked once, here: anything that two parsers could frame differently
    is refused, because the upstream must see exactly the requests this proxy saw.
    After an upgrade request, the client's further bytes arrive through `feed` too and
    are held until the upstream agrees to switch protocols.
    """

    __slots__ = (
        "body_seen",
        "buffered",
        "chunked",
        "client",
        "complete",
        "connection",
        "content_length",
        "end_sink",
        "headers",
        "host",
        "keep_alive",
        "kept",
        "kept_bytes",
        "kept_limit",
        "method",
        "pending",
        "sink",
        "target",
        "trailers",
        "upgrade",
        "upgrade_to",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[Header],
        *,
        client: bytes,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # b"1.1" or b"1.0"
        self.headers = headers
        self.client = client  # peer address (ASCII), for x-forwarded-for
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.content_length: int | None = None
        self.chunked = False
        self.host = b""
        self.connection = b""  # the Connection header's value(s), for the tokens it lists
        self.upgrade_to = b""
        self._check_head()
        self.trailers: list[Header] = []
        self.pending: deque[bytes] = deque()  # body received before anyone could take it
        self.buffered = 0  # bytes in `pending`
        self.body_seen = 0  # body bytes received so far
        self.complete = False  # the whole body has arrived
        self.sink: BodySink | None = None
        self.end_sink: Callable[[], None] | None = None
        self.kept: list[bytes] | None = None  # body chunks kept to be sent again (see keep)
        self.kept_bytes = 0
        self.kept_limit = 0

    def _check_head(self) -> None:
        """One pass over the headers: framing, Host, Connection; ambiguity is a 400."""
        host_seen = False
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                # llhttp refuses these too; checked again so no parser leniency can slip by.
                if self.content_length is not None or not value.isdigit():
                    raise BadRequest("invalid or repeated Content-Length")
                self.content_length = int(value)
            elif lname == b"transfer-encoding":
                if self.chunked or value.lower() != b"chunked":
                    raise BadRequest("unsupported Transfer-Encoding (only a single 'chunked')")
                self.chunked = True
            elif lname == b"host":
                if host_seen:
                    raise BadRequest("repeated Host")
                host_seen = True
                self.host = value
            elif lname == b"connection":
                self.connection = value if not self.connection else self.connection + b"," + value
            elif lname == b"upgrade":
                self.upgrade_to = value
        if self.chunked:
            if self.content_length is not None:
                raise BadRequest("both Content-Length and Transfer-Encoding")
            if self.version == b"1.0":  # RFC 9112 §6.1: the framing is faulty
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if not host_seen and self.version == b"1.1":
            raise BadRequest("HTTP/1.1 request without Host")
        if self.upgrade and self.has_body:
            # The parser hands the body over as tunnel bytes; refuse rather than guess.
            raise BadRequest("upgrade request with a body")

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def resendable(self) -> bool:
        """Everything forwarded so far can be sent again (see keep), or nothing was yet."""
        return self.kept is not None or not self.has_body or self.sink is None

    def feed(self, chunk: bytes) -> None:
        self.body_seen += len(chunk)
        if self.sink is not None:
            if self.kept is not None:
                self._keep(chunk)
            self.sink(chunk)
        else:
            self.pending.append(chunk)
            self.buffered += len(chunk)

    def keep(self, limit: int) -> None:
        """From now on keep what is forwarded, up to `limit` bytes, to send it again."""
        self.kept = []
        self.kept_limit = limit

    def _keep(self, chunk: bytes) -> None:
        assert self.kept is not None
        self.kept_bytes += len(chunk)
        if self.kept_bytes <= self.kept_limit:
            self.kept.append(chunk)
        else:
            self.kept = None  # too large to send again: it goes once, or fails

    def finish(self) -> None:
        self.complete = True
        if self.end_sink is not None:
            self.end_sink()

    def drain_to(self, sink: BodySink, end: Callable[[], None]) -> None:
        """Hand what was buffered to `sink`, then stream straight to it; `end` at the end."""
        while self.pending:
            chunk = self.pending.popleft()
            if self.kept is not None:
                self._keep(chunk)
            sink(chunk)
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
        self.kept = None


def _drop(chunk: bytes) -> None:
    """A body sink that forgets what it is given."""
