"""The engine's HTTP duties at the gateway's edge in HAProxy's words: headers and checks."""

from __future__ import annotations

from mesh.engine.headers import TRACEPARENT
from mesh.engine.request import AUTHORITY
from mesh.haproxy.default_routes_cfg import ABSOLUTE
from mesh.haproxy.replies_cfg import body, reply
from mesh.haproxy.words import quote

# Hop-by-hop headers HAProxy itself does not remove (it drops only the keep-alive and close
# tokens of Connection, and handles transfer-encoding); the engine drops these too
# (mesh.engine.headers). Connection and Upgrade stay: a WebSocket upgrade needs them.
_HOP_BY_HOP = (
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "http2-settings",
    "keep-alive",
)
# RFC 9110 §6.6.1 and §7.6.3, as the engine keeps them: every answer dated (the proxy's
# own included), and the proxy named in the Via of what it forwards.
RESPONSE_DUTIES = [
    "http-after-response set-header date %[date,http_date] unless { res.fhdr(date) -m found }",
    'http-response add-header via "1.1 natsmesh"',
    # Hop-by-hop in answers too (mesh.engine.response): HAProxy leaves both.
    "http-response del-header keep-alive",
    "http-response del-header proxy-authenticate",
]
# A valid Host (RFC 9110 §7.2) as the engine checks it, anchored for HAProxy's PCRE2.
_HOST = f"^(?:{AUTHORITY.pattern.decode()})$"
# RFC 9110 §7.6.2: TRACE and OPTIONS count Max-Forwards down, and an invalid one is 400.
_HOP_COUNTED = "{ method TRACE OPTIONS }"
# An Upgrade that Connection does not name is no upgrade, and an h2c one would hand the
# client's connection to the upstream as HTTP/2, past every rule here (h2c smuggling):
# the engine removes both.
_NO_UPGRADE = (
    "http-request del-header upgrade if { req.fhdr(upgrade) -m found } "
    "!{ req.fhdr(connection) -m sub -i upgrade } || { req.fhdr(upgrade) -m sub -i h2c }"
)
# W3C trace context, the engine's pattern anchored: others are replaced by a new one.
_TRACEPARENT = f"^{TRACEPARENT.pattern.decode()}$"
# A new trace's ids, 128 and 64 random bits as the engine's: 8 hex digits from each 32-bit
# `rand` (`hex` prints 8 bytes, the first 4 zero). One rule, no variables: the former
# two UUIDs cut into fields cost HAProxy as much as a tenth of all it does per request.
_RANDOM_HEX8 = "%[rand,hex,bytes(8),lower]"
_TRACE_ID = _RANDOM_HEX8 * 4
_SPAN_ID = _RANDOM_HEX8 * 2
# A `%` that does not start a percent-encoding (RFC 3986 §2.1): the engine refuses it.
_BAD_PERCENT = "%(.?$|[^0-9A-Fa-f]|.[^0-9A-Fa-f])"


def edge(normalize_path: bool, max_body_bytes: int) -> list[str]:
    """The engine's header conventions and request checks at the edge
    (mesh.engine.headers, mesh.engine.request), before routing."""
    lines = [
        # The client's x-request-id (its first), else a new one: the log's %ID and replies.
        'unique-id-format "%[var(txn.request_id)]"',
        "http-request set-var(txn.request_id) req.fhdr(x-request-id,1) "
        "if { req.fhdr(x-request-id,1) -m len gt 0 }",
        # No regex on the way of every request: these rules run per request, and a
        # regex costs HAProxy more than all the rest of a rule.
        "http-request set-var(txn.request_id) uuid unless { var(txn.request_id) -m found }",
        "http-request set-header x-request-id %[unique-id]",
        "http-request del-header x-mesh- -m beg",
        *(f"http-request del-header {name}" for name in _HOP_BY_HOP),
        _NO_UPGRADE,
    ]
    if normalize_path:
        lines += _normalized()
    no_host = body("BadRequest", "DPE", "HTTP/1.1 request without Host")
    lines.append(  # RFC 9112 §3.2: a 1.1 request without Host is 400
        f"http-request return status 400 {reply('DPE', no_host)} "
        "if !{ req.fhdr(host) -m found } { req.ver 1.1 }"
    )
    bad_host = body("BadRequest", "DPE", "invalid Host or user info in the target")
    lines.append(  # an absolute-form target's authority is the Host: HAProxy makes them agree
        f"http-request return status 400 {reply('DPE', bad_host)} "
        f"if {{ req.fhdr(host) -m found }} !{{ req.fhdr(host) -m reg {quote(_HOST)} }} "
        f"|| {ABSOLUTE} {{ url,field(3,/) -m sub @ }}"
    )
    lines += _max_forwards()
    lines.append(  # `010` is 10 to HAProxy, 8 to an upstream reading octal: sent canonical
        "http-request set-header content-length %[req.fhdr(content-length),add(0)] "
        "if { req.fhdr(content-length) -m beg 0 }"
    )
    if max_body_bytes:
        too_large = body("BodyTooLarge", "DPE", "request body over the limit")
        lines.append(
            f"http-request return status 413 {reply('DPE', too_large)} "
            f"if {{ req.hdr_val(content-length) gt {max_body_bytes} }}"
        )
    lines += [
        "http-request set-header traceparent %[req.fhdr(traceparent,1)] "
        "if { req.fhdr_cnt(traceparent) gt 1 }",
        # The regex only where there is a header to check.
        "http-request del-header traceparent if { req.fhdr(traceparent) -m found } "
        f"!{{ req.fhdr(traceparent) -m reg {quote(_TRACEPARENT)} }}",
        f"http-request set-header traceparent 00-{_TRACE_ID}-{_SPAN_ID}-01 "
        "unless { req.fhdr(traceparent) -m found }",
        "http-request set-header x-forwarded-proto http "
        "unless { req.hdr(x-forwarded-proto) -m found }",
        "http-request set-header x-forwarded-host %[req.fhdr(host)] "
        "if !{ req.hdr(x-forwarded-host) -m found } { req.fhdr(host) -m found }",
        'http-request add-header via "%[req.ver] natsmesh"',
        # The host routes compare: lower case, no port, no final dot (routing.hostname);
        # the regexes only for the hosts that need them.
        "http-request set-var(txn.host) req.fhdr(host),lower",
        "http-request set-var(txn.host) var(txn.host),regsub(:[0-9]*$,) "
        "if { var(txn.host) -m sub : }",
        "http-request set-var(txn.host) var(txn.host),regsub([.]$,) if { var(txn.host) -m end . }",
    ]
    return lines


def _max_forwards() -> list[str]:
    """The engine's Max-Forwards for TRACE and OPTIONS (mesh.engine.request), but for a
    0 there, which the engine answers itself and HAProxy forwards (docs/haproxy.md)."""
    bad = body("BadRequest", "DPE", "invalid Max-Forwards")
    return [
        f"http-request return status 400 {reply('DPE', bad)} if {_HOP_COUNTED} "
        "{ req.fhdr(max-forwards) -m found } !{ req.fhdr(max-forwards) -m reg ^[0-9]+$ }",
        "http-request set-header max-forwards %[req.fhdr(max-forwards),sub(1)] "
        f"if {_HOP_COUNTED} {{ req.fhdr(max-forwards) -m int gt 0 }}",
    ]


def _normalized() -> list[str]:
    """Paths as the engine normalises them, where HAProxy can (see docs/haproxy.md)."""
    bad = body(
        "BadRequest", "DPE", "path not accepted (dot segment, encoded separator, bad %-encoding)"
    )
    return [
        "http-request set-path %[path,regsub(/+,/,g)] if { path -m sub // }",
        f"http-request return status 400 {reply('DPE', bad)} "
        "if { path -m sub /./ /../ } || { path -m end /. /.. } || { path -m sub -i %2f %5c } "
        # The regex only for paths with a `%`: a `%` not followed by two hex digits.
        f"|| {{ path -m sub % }} {{ path -m reg {_BAD_PERCENT} }}",
    ]
