"""One parsed client request: its head, its framing (checked), and its body as it arrives."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from mesh.errors import BadRequest
from mesh.forwarding.routing import is_absolute, split_absolute

Header = tuple[bytes, bytes]  # (name, value) as received: names keep their case
BodySink = Callable[[bytes], None]

# RFC 9110 §7.2: uri-host [":" port], the host a reg-name or an IP literal (no user info).
# A reg-name percent-encodes only UTF-8 (non-ASCII) bytes (RFC 3986 §3.2.2): `we%20b`
# hides a character a host cannot have, and would be looked up as service `we%20b`.
AUTHORITY = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[89A-Fa-f][0-9A-Fa-f])*)(?::[0-9]*)?"
)


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
        "final",
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
        self.final = False  # Max-Forwards reached 0: this proxy answers, nothing is forwarded
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
                if value[0] == 0x30 and len(value) > 1:  # `010`: forwarded as `10`
                    self._rewrite(b"content-length", b"%d" % self.content_length)
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
        if self.target[0] != 0x2F and is_absolute(self.target):  # not `/`: rare
            self._take_authority()
        if self.host not in _VALID_HOSTS:
            _check_host(self.host)
        method = self.method
        if method == b"TRACE" or method == b"OPTIONS":  # RFC 9110 §7.6.2
            self._count_hop()
        if self.upgrade:
            if self.has_body:
                # The parser hands the body over as tunnel bytes; refuse rather than guess.
                raise BadRequest("upgrade request with a body")
            if b"h2c" in self.upgrade_to.lower():
                self._decline_h2c()

    def _take_authority(self) -> None:
        """An absolute-form target's authority is the Host (RFC 9112 §3.2.2), forwarded so."""
        authority = split_absolute(self.target)[0]
        _check_host(authority)
        self.host = authority
        if not self._rewrite(b"host", authority):
            self.headers.append((b"Host", authority))  # an HTTP/1.0 request may have none

    def _count_hop(self) -> None:
        """Max-Forwards goes one lower upstream; at 0, this proxy is the final recipient."""
        for index, (name, value) in enumerate(self.headers):
            if name.lower() == b"max-forwards":
                if not value.isdigit():
                    raise BadRequest("invalid Max-Forwards")
                hops = int(value)
                if hops:
                    self.headers[index] = (name, b"%d" % (hops - 1))
                else:
                    self.final = True
                return

    def _decline_h2c(self) -> None:
        """HTTP/2 over cleartext is not offered to the upstream: the engine speaks HTTP/1.1.

        An upstream that accepted would carry every later request of the connection past
        routing; the request goes on as a plain one (its Upgrade and HTTP2-Settings are
        hop-by-hop), or as an upgrade to the other protocols it offered.
        """
        others = [p for p in self.upgrade_to.split(b",") if p.strip().lower() != b"h2c"]
        self.upgrade_to = b",".join(others).strip()
        self.upgrade = bool(self.upgrade_to)

    def _rewrite(self, name: bytes, value: bytes) -> bool:
        """Replace header `name` (lower case; the first one) with `value`; False if absent."""
        for index, (key, _) in enumerate(self.headers):
            if key.lower() == name:
                self.headers[index] = (key, value)
                return True
        return False

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


def _check_host(host: bytes) -> None:
    """BadRequest unless `host` is a valid Host value (then remembered, see _VALID_HOSTS)."""
    if AUTHORITY.fullmatch(host) is None:
        raise BadRequest(f"invalid Host {host[:64]!r}")
    if len(_VALID_HOSTS) >= 1024:
        _VALID_HOSTS.clear()
    if len(host) <= 255:
        _VALID_HOSTS.add(host)


# Hosts repeat: a set lookup per request instead of a regular expression (some thousand
# instructions). Bounded in entries and length; forgets everything when full.
_VALID_HOSTS: set[bytes] = {b""}


def _drop(chunk: bytes) -> None:
    """A body sink that forgets what it is given."""
