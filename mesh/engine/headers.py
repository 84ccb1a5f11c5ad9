"""Header rules of a proxy: hop-by-hop removal, forwarding headers, request ids, trace context."""

from __future__ import annotations

import itertools
import os
import random
import re

from mesh.engine.request import Header, Request

# RFC 9110 §7.6.1 plus the de-facto ones (and RFC 9113 §3.2.1's, of the h2c upgrade that
# this proxy declines); a proxy must never forward these.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"http2-settings",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# `Connection: content-length` must not strip the framing (the body would then read as
# the next request), nor `Connection: host` the authority.
_PROTECTED = frozenset({b"host", b"content-length"})
_USUAL_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade", b"keep-alive, upgrade"})
_NONE: frozenset[bytes] = frozenset()
# version-trace id-parent id-flags; version ff and all-zero ids are invalid (W3C §3.2.2).
TRACEPARENT = re.compile(
    rb"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)

# Who the route's edge authentication proved the client to be. Set only by the proxy
# that proved it: a client's own copy is dropped everywhere, with or without auth.
CONSUMER = b"x-mesh-consumer"

# RFC 9110 §7.6.3: a proxy adds itself to Via, named by a pseudonym, after the received
# protocol's version.
VIA = {b"1.1": b"via: 1.1 natsmesh\r\n", b"1.0": b"via: 1.0 natsmesh\r\n"}

_REQUEST_IDS = itertools.count(1)
_PROCESS_TAG = os.urandom(6).hex().encode()


def new_request_id() -> bytes:
    """Unique per process start and request, without the cost of uuid4 on the hot path."""
    return b"%s-%x" % (_PROCESS_TAG, next(_REQUEST_IDS))


def received_request_id(headers: list[Header]) -> bytes:
    """The client's x-request-id (the first, as forwarding keeps it), else a new one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            return value
    return new_request_id()


def new_traceparent(rng: random.Random) -> bytes:
    """A W3C trace context for a request that arrived without one (sampled flag set)."""
    return b"00-%032x-%016x-01" % (rng.getrandbits(128), rng.getrandbits(64))


def listed(connection: bytes) -> frozenset[bytes]:
    """Header names a `Connection` value makes hop-by-hop for this message only."""
    if not connection:
        return _NONE
    lowered = connection.lower()
    if lowered in _USUAL_CONNECTION:
        return _NONE
    tokens = frozenset(t.strip() for t in lowered.split(b","))
    return tokens - HOP_BY_HOP - _PROTECTED - {b""}


def render(headers: list[Header]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def forward_request_head(
    request: Request,
    target: bytes,
    *,
    host: bytes | None = None,
    service: str,
    proto: bytes,
    strip_mesh: bool,
    rng: random.Random,
    consumer: bytes | None = None,
    credential: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(the complete head to send upstream, the request id).

    Hop-by-hop headers are removed and the framing is written by the proxy itself;
    x-forwarded-*, x-request-id and traceparent are appended, propagated or created.
    `host` (a route's rewrite) replaces the client's Host; x-forwarded-host keeps it.
    `consumer` (edge authentication) goes in x-mesh-consumer; the `credential` header
    (lower case) that carried an API key is not forwarded.
    """
    drop = listed(request.connection)
    out: list[bytes] = [b"%s %s HTTP/1.1\r\n" % (request.method, target)]
    request_id = b""
    traceparent = False
    forwarded_for = b""
    forwarded_proto = forwarded_host = False
    for name, value in request.headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or (drop and lname in drop) or lname == credential:
            continue
        if lname.startswith(b"x-"):
            if lname == b"x-request-id":
                if request_id:
                    continue  # one id per request, or logs on both sides disagree
                request_id = value
            elif lname == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
            elif lname == b"x-forwarded-proto":
                if proto == b"https":
                    continue  # we terminated TLS ourselves: no client's claim overrides it
                forwarded_proto = True
            elif lname == b"x-forwarded-host":
                forwarded_host = True
            elif lname == CONSUMER or (strip_mesh and lname.startswith(b"x-mesh-")):
                continue
        elif host is not None and lname == b"host":
            continue
        elif lname == b"traceparent":
            # A second or malformed one is dropped; a fresh trace starts below (W3C §3.2).
            if traceparent or TRACEPARENT.fullmatch(value) is None:
                continue
            traceparent = True
        out.append(b"%s: %s\r\n" % (name, value))
    if host is not None:
        out.append(b"host: %s\r\n" % host)
    elif not request.host:
        out.append(b"host: %s\r\n" % service.encode())

    if consumer is not None:
        out.append(b"%s: %s\r\n" % (CONSUMER, consumer))

    client = request.client
    out.append(
        b"x-forwarded-for: %s, %s\r\n" % (forwarded_for, client)
        if forwarded_for
        else b"x-forwarded-for: %s\r\n" % client
    )

    if not forwarded_proto:
        out.append(b"x-forwarded-proto: %s\r\n" % proto)
    if not forwarded_host and request.host:
        out.append(b"x-forwarded-host: %s\r\n" % request.host)
    if not request_id:
        request_id = new_request_id()
        out.append(b"x-request-id: %s\r\n" % request_id)
    if not traceparent:
        out.append(b"traceparent: %s\r\n" % new_traceparent(rng))
    out.append(VIA[request.version])  # after any the client sent: the list is in hop order
    if request.chunked:
        out.append(b"transfer-encoding: chunked\r\n")
    if request.upgrade:
        out.append(b"connection: upgrade\r\nupgrade: %s\r\n" % request.upgrade_to)
    out.append(b"\r\n")
    return b"".join(out), request_id
