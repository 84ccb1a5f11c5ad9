"""An upstream's response head rewritten for the client: hop-by-hop removal and framing."""

from __future__ import annotations

from http import HTTPStatus
from typing import NamedTuple

from mesh.engine.headers import HOP_BY_HOP, VIA, listed
from mesh.engine.request import Header
from mesh.errors import UpstreamProtocolError

NO_BODY_STATUS = frozenset({204, 304})

_PHRASES = {int(s): s.phrase.encode() for s in HTTPStatus}
_NONE: frozenset[bytes] = frozenset()
_VIA = VIA[b"1.1"]
# Headers that need a look: hop-by-hop ones, the length and the date; the rest are copied
# as they are.
_LOOKED_AT = HOP_BY_HOP | {b"content-length", b"date"}


def phrase(status: int) -> bytes:
    return _PHRASES.get(status, b"Unknown")


class ClientHead(NamedTuple):
    data: bytes  # the head as the client gets it, final CRLF included
    rechunk: bool  # the body goes to the client chunked, whatever the upstream sent
    delimited: bool  # the upstream's body has a length (else it ends when it closes)
    keep_alive: bool  # the client connection survives this response


def client_head(
    version: bytes,
    status: int,
    reason: bytes,
    headers: list[Header],
    *,
    bodiless: bool,
    keep_alive: bool,
    date: bytes,
) -> ClientHead:
    """Raises UpstreamProtocolError for framing this proxy cannot relay faithfully.

    `version` is the client's: the status line says HTTP/1.1 to every client (RFC 9110
    §2.5), the framing is one a 1.0 client can read. `date` (a header line) is added when
    the upstream sent none (§6.6.1); Via names this proxy (§7.6.3). The upstream's
    version is not read for Via (it costs a string per response): upstreams speak 1.1.
    """
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or phrase(status))]
    connection, chunked, length, dated = _copy(headers, _NONE, out)
    drop = listed(connection)
    if drop:  # rare: the upstream names its own hop-by-hop headers
        del out[1:]
        _copy(headers, drop, out)
    if not dated:
        out.append(date)
    out.append(_VIA)
    rechunk = False
    if not bodiless and not length:
        # Chunked or read-to-close upstream bodies: 1.1 clients get them chunked (so the
        # connection survives), 1.0 clients read to the close.
        if version == b"1.1":
            rechunk = True
            out.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False
    if not keep_alive:
        out.append(b"connection: close\r\n\r\n")
    elif version == b"1.0":
        out.append(b"connection: keep-alive\r\n\r\n")
    else:
        out.append(b"\r\n")
    return ClientHead(b"".join(out), rechunk, chunked or length, keep_alive)


def _copy(
    headers: list[Header], drop: frozenset[bytes], out: list[bytes]
) -> tuple[bytes, bool, bool, bool]:
    """Copy end-to-end headers into `out`; returns (Connection value, chunked, has length,
    has a date)."""
    connection = b""
    chunked = length = dated = False
    append = out.append
    for name, value in headers:
        lname = name.lower()
        if lname in _LOOKED_AT:
            if lname == b"content-length":
                length = True
            elif lname == b"date":
                dated = True
            elif lname == b"connection":
                connection = value if not connection else connection + b"," + value
                continue
            elif lname == b"transfer-encoding":
                # Any other coding would reach the client undeclared once this header goes.
                if chunked or value.lower() != b"chunked":
                    raise UpstreamProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
                chunked = True
                continue
            else:
                continue  # the other hop-by-hop headers
        elif drop and lname in drop:
            continue
        append(b"%s: %s\r\n" % (name, value))
    return connection, chunked, length, dated


def interim_head(status: int, reason: bytes, headers: list[Header]) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) relayed to an HTTP/1.1 client."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or phrase(status))]
    out.extend(b"%s: %s\r\n" % (n, v) for n, v in headers if n.lower() not in HOP_BY_HOP)
    out.append(b"\r\n")
    return b"".join(out)


def switching_head(reason: bytes, headers: list[Header]) -> bytes:
    """The 101 that opens a tunnel: end-to-end headers plus the protocol agreed to."""
    out = [b"HTTP/1.1 101 %s\r\n" % (reason or phrase(101))]
    upgrade = b""
    for name, value in headers:
        lname = name.lower()
        if lname == b"upgrade":
            upgrade = value
        elif lname not in HOP_BY_HOP:
            out.append(b"%s: %s\r\n" % (name, value))
    out.append(b"connection: upgrade\r\nupgrade: %s\r\n\r\n" % upgrade)
    return b"".join(out)
