"""Responses the proxy makes itself: the one place where errors become HTTP statuses."""

from __future__ import annotations

import msgspec

from mesh import errors
from mesh.engine.request import Request

# Error type -> (status, x-mesh-flags), in Envoy's response-flag vocabulary.
STATUS: dict[type[errors.ProxyError], tuple[int, str]] = {
    errors.BadRequest: (400, "DPE"),
    errors.HeadersTooLarge: (431, "DPE"),
    errors.BodyTooLarge: (413, "DPE"),
    errors.ClientTimeout: (408, "DT"),
    errors.NoRoute: (404, "NR"),
    errors.NoHealthyUpstream: (503, "UH"),
    errors.UpstreamConnectFailure: (502, "UF"),
    errors.UpstreamTimeout: (504, "UT"),
    errors.UpstreamReset: (502, "UC"),
    errors.UpstreamProtocolError: (502, "UPE"),
    errors.Overflow: (503, "UO"),
    errors.RateLimited: (429, "RL"),
    # Edge authentication: Envoy's flag for a request its authorization check refused
    # (UAEX), and the one its RBAC filter sets for an identity a rule does not admit.
    errors.Unauthenticated: (401, "UAEX"),
    errors.ConsumerNotAllowed: (403, "RBAC"),
    errors.AccessDenied: (403, "RBAC"),
}

_REASONS = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


class Body(msgspec.Struct, omit_defaults=True):
    error: str
    flags: str
    detail: str
    service: str = ""
    instance: str = ""
    request_id: str = ""
    attempts: int = 0  # with URX: how many instances were tried
    routes: tuple[str, ...] = ()  # with NR: routes considered (for the request's host)
    more_routes: int = 0  # with NR: how many more were considered than `routes` names


_encode = msgspec.json.Encoder().encode


def classify(error: errors.ProxyError) -> tuple[int, str]:
    if isinstance(error, errors.RetriesExhausted):
        return classify(error.last)[0], "URX"  # the last failure's status, Envoy's flag
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "-"


def render(
    error: errors.ProxyError,
    *,
    request_id: bytes = b"",
    keep_alive: bool,
    head_only: bool = False,
    date: bytes,
) -> bytes:
    """The complete response (head and JSON body) for an error the proxy answers itself.

    `date` is the engine's `date` header line: every answer carries one (RFC 9110 §6.6.1).
    """
    status, flags = classify(error)
    body = _encode(
        Body(
            error=type(error).__name__,
            flags=flags,
            detail=error.detail,
            service=error.service,
            instance=error.instance,
            request_id=request_id.decode("latin-1"),
            attempts=error.attempts if isinstance(error, errors.RetriesExhausted) else 0,
            routes=error.routes if isinstance(error, errors.NoRoute) else (),
            more_routes=error.more_routes if isinstance(error, errors.NoRoute) else 0,
        )
    )
    head = (
        b"HTTP/1.1 %d %s\r\n%scontent-type: application/json\r\ncontent-length: %d\r\n"
        b"x-mesh-flags: %s\r\n"
        % (status, _REASONS.get(status, b"Error"), date, len(body), flags.encode())
    )
    if request_id:
        head += b"x-request-id: %s\r\n" % request_id
    if isinstance(error, errors.RateLimited):
        head += b"retry-after: %d\r\n" % max(1, round(error.retry_after + 0.5))
    elif isinstance(error, errors.Unauthenticated):
        head += b"www-authenticate: %s\r\n" % error.challenge.encode("latin-1")

    head += b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n"
    return head if head_only else head + body


def body_length(response: bytes) -> int:
    """Body bytes of a whole response this module made (what follows its head)."""
    return len(response) - response.index(b"\r\n\r\n") - 4


# --- the final recipient: Max-Forwards reached 0 here ------------------------------------

# What a reflected TRACE shows of the headers: only these, harmless ones. Anything else
# may be a credential (RFC 9110 §9.3.8: Authorization and Cookie, but also a route's
# API-key header under any name) or what a proxy before this one added for the mesh.
_REFLECTED = frozenset({b"host", b"max-forwards", b"via", b"user-agent"})


def final_recipient(request: Request, *, keep_alive: bool, date: bytes) -> bytes:
    """The answer to a TRACE or OPTIONS whose Max-Forwards is 0 (RFC 9110 §7.6.2).

    This proxy answers as the final recipient: TRACE with its request reflected as
    `message/http` (as parsed and checked: a normalised target), its headers reduced to
    _REFLECTED and Accept*; OPTIONS with an empty 200.
    """
    body = b""
    kind = b""
    if request.method == b"TRACE":
        lines = [b"TRACE %s HTTP/%s\r\n" % (request.target, request.version)]
        lines.extend(
            b"%s: %s\r\n" % (name, value)
            for name, value in request.headers
            if name.lower() in _REFLECTED or name[:6].lower() == b"accept"
        )
        lines.append(b"\r\n")
        body = b"".join(lines)
        kind = b"content-type: message/http\r\n"
    connection = b"keep-alive" if keep_alive else b"close"
    head = b"HTTP/1.1 200 OK\r\n%s%scontent-length: %d\r\nconnection: %s\r\n\r\n" % (
        date,
        kind,
        len(body),
        connection,
    )
    return head + body
