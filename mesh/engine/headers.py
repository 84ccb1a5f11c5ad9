"""Header rules of a proxy: hop-by-hop removal, forwarding headers, request ids, trace context."""

from __future__ import annotations

import itertools
import os
import random

# RFC 9110 §7.6.1 plus the de-facto ones; a proxy must never forward these.
HOP_BY_HOP = frozenset(
    {
        b"connection",
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

Header = tuple[bytes, bytes]

_REQUEST_IDS = itertools.count(1)
_PROCESS_TAG = os.urandom(6).hex()


def new_request_id() -> bytes:
    """Unique per process start and request, without the cost of uuid4 on the hot path."""
    return f"{_PROCESS_TAG}-{next(_REQUEST_IDS):x}".encode()


def new_traceparent(rng: random.Random) -> bytes:
    """A W3C trace context for a request that arrived without one (sampled flag set)."""
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01".encode()


def connection_tokens(headers: list[Header]) -> frozenset[bytes]:
    """Header names listed in `Connection`, which are hop-by-hop for this message only."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def render(headers: list[Header]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def forward_request_head(
    method: bytes,
    target: bytes,
    headers: list[Header],
    *,
    client_ip: str,
    proto: bytes,
    strip_mesh: bool,
    rng: random.Random,
) -> tuple[bytes, bytes]:
    """(head lines for the upstream without the final CRLF, request id).

    Hop-by-hop headers are removed; x-forwarded-*, x-request-id and traceparent added.
    """
    drop = connection_tokens(headers) if _has(headers, b"connection") else frozenset()
    out: list[bytes] = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    request_id = b""
    traceparent = False
    forwarded_for = b""
    forwarded_proto = forwarded_host = False
    host = b""
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in drop:
            continue
        if lname.startswith(b"x-"):
            if lname == b"x-request-id":
                request_id = value
            elif lname == b"x-forwarded-for":
                forwarded_for = value
                continue
            elif lname == b"x-forwarded-proto":
                forwarded_proto = True
            elif lname == b"x-forwarded-host":
                forwarded_host = True
            elif strip_mesh and lname.startswith(b"x-mesh-"):
                continue
        elif lname == b"traceparent":
            traceparent = True
        elif lname == b"host":
            host = value
        out.append(b"%s: %s\r\n" % (name, value))
    client = client_ip.encode()
    out.append(
        b"x-forwarded-for: %s, %s\r\n" % (forwarded_for, client)
        if forwarded_for
        else b"x-forwarded-for: %s\r\n" % client
    )
    if not forwarded_proto:
        out.append(b"x-forwarded-proto: %s\r\n" % proto)
    if not forwarded_host and host:
        out.append(b"x-forwarded-host: %s\r\n" % host)
    if not request_id:
        request_id = new_request_id()
        out.append(b"x-request-id: %s\r\n" % request_id)
    if not traceparent:
        out.append(b"traceparent: %s\r\n" % new_traceparent(rng))
    return b"".join(out), request_id


def _has(headers: list[Header], lname: bytes) -> bool:
    return any(name.lower() == lname for name, _ in headers)
