"""The HAProxy configuration of a gateway: pure, from a compiled policy revision and the view."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mesh.engine.request import AUTHORITY
from mesh.haproxy import backends_cfg, routes_cfg
from mesh.haproxy.default_routes_cfg import ABSOLUTE, default_routes, no_route
from mesh.haproxy.layout import FRONTEND, LOG_FORMAT, Backend, Server, backend_name
from mesh.haproxy.replies_cfg import AFTER_RESPONSE, CLIENT_ERRORS, body, http_errors, reply
from mesh.haproxy.words import address, ms, quote
from mesh.policy.compile import Compiled

_REVISION = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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
_RESPONSE_DUTIES = [
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
# W3C trace context (mesh.engine.headers._TRACEPARENT): others are replaced by a new one.
_TRACEPARENT = "^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
# A new trace's ids from two UUIDv4s' hex fields (no regex): 32 and 16 hex digits.
_TRACE_ID = "".join(f"%[var(txn.trace),field({n},-)]" for n in range(1, 6))
_SPAN_ID = "".join(f"%[var(txn.span),field({n},-)]" for n in range(1, 4))
# A `%` that does not start a percent-encoding (RFC 3986 §2.1): the engine refuses it.
_BAD_PERCENT = "%(.?$|[^0-9A-Fa-f]|.[^0-9A-Fa-f])"


@dataclass(frozen=True, slots=True)
class PlaneConfig:
    """What the configuration needs besides policy: addresses, sockets, the view's names.

    `revision` is what the probe listener answers, so a request proves which
    configuration serves. `known` are the services the default routes may reach, less
    `hidden` (those a route's auth guards, see DefaultRoutes.hiding). The client settings
    mirror mesh.config's of the same names.
    """

    listen: tuple[tuple[str, int], ...]
    log_socket: str
    probe: tuple[str, int]
    revision: str
    default_routes: bool = True
    known: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()
    client_header_timeout: float = 10.0
    client_idle_timeout: float = 60.0
    normalize_path: bool = True
    max_body_bytes: int = 0
    log_sample: int = 1  # 1 in N instances' answers below 500 logged; all the others

    def __post_init__(self) -> None:
        if not _REVISION.fullmatch(self.revision):
            raise ValueError(f"revision {self.revision!r}: use [A-Za-z0-9._:-], 1 to 128")

    @property
    def reachable(self) -> list[str]:
        """The services the default routes send to, when they are on."""
        return sorted(self.known - self.hidden) if self.default_routes else []


OLD_WORKER_DEADLINE = 30.0  # seconds


def backends(compiled: Compiled, plane: PlaneConfig) -> tuple[Backend, ...]:
    """Every backend the configuration names: route destinations, then default routes'."""
    found: dict[str, Backend] = {}
    if compiled.routes is not None:
        for route in compiled.routes.routes:
            for destination in route.to:
                if destination.weight:
                    subset = tuple(sorted(destination.subset.items()))
                    found.setdefault(
                        backend_name(destination.service, subset),
                        Backend(destination.service, subset),
                    )
    for service in plane.reachable:
        found.setdefault(service, Backend(service))
    return tuple(found.values())


def render(compiled: Compiled, plane: PlaneConfig, servers: Mapping[str, Sequence[Server]]) -> str:
    """The whole configuration; `servers` by backend name (layout.backend_name)."""
    sections = [_global(plane), _defaults(plane), _frontend(compiled, plane), _probe(plane)]
    sections.extend(
        backends_cfg.section(compiled, backend, servers.get(backend.name, ()))
        for backend in backends(compiled, plane)
    )
    return "\n".join(sections)


def _section(head: str, lines: Sequence[str]) -> str:
    return "\n    ".join([head, *lines]) + "\n"


def _global(plane: PlaneConfig) -> str:
    return _section(
        "global",
        [
            f"log {plane.log_socket} len 8192 format raw local0",
            # A reload's old worker finishes its requests, but no longer than this: long
            # streams must not keep old configurations (and their servers) alive for ever.
            f"hard-stop-after {ms(OLD_WORKER_DEADLINE)}",
        ],
    )


def _defaults(plane: PlaneConfig) -> str:
    return _section(
        "defaults",
        [
            "mode http",
            "log global",
            "option forwardfor",
            "option http-keep-alive",
            f"timeout http-request {ms(plane.client_header_timeout)}",
            f"timeout client {ms(plane.client_idle_timeout)}",
            f"timeout http-keep-alive {ms(plane.client_idle_timeout)}",
            "timeout connect 1s",
            "timeout server 15s",
            *http_errors(CLIENT_ERRORS),
        ],
    )


def _probe(plane: PlaneConfig) -> str:
    return _section(
        "frontend probe",
        [
            f"bind {address(*plane.probe)}",
            "no log",  # the gateway reads the log for traffic; probes are not traffic
            f"http-request return status 200 content-type text/plain string {plane.revision}",
        ],
    )


def _frontend(compiled: Compiled, plane: PlaneConfig) -> str:
    lines = [f"bind {address(host, port)}" for host, port in plane.listen]
    lines.append(f'log-format "{LOG_FORMAT}"')
    # The flags of every answer, the proxy's own included, for the log line.
    lines.append("http-after-response set-var(txn.flags) res.hdr(x-mesh-flags)")
    lines += _RESPONSE_DUTIES
    if plane.log_sample > 1:  # the gateway counts each such line log_sample times
        lines.append(  # an instance's answers only: the proxy's own are all logged
            "http-response set-log-level silent "
            f"if {{ status lt 500 }} {{ rand({plane.log_sample}) gt 0 }}"
        )
    lines += _edge(plane)
    if compiled.routes is not None:
        lines += routes_cfg.matching(compiled.routes)
    lines += default_routes(plane.reachable)
    lines.append(AFTER_RESPONSE)
    lines.append(no_route(plane.default_routes))
    # `http://hello` has no path: origin-form needs one (the engine sends `/`). Given
    # while the target is still absolute: once origin-form, ABSOLUTE no longer holds.
    lines.append(f"http-request set-path / if {ABSOLUTE} !{{ path -m len gt 0 }}")
    lines.append(f"http-request set-uri %[pathq] if {ABSOLUTE}")  # upstreams get origin-form
    if compiled.routes is not None:
        for route in compiled.routes.routes:
            lines += routes_cfg.rewriting(route) + routes_cfg.drawing(route)
        for route in compiled.routes.routes:
            lines += routes_cfg.choosing(route)
    if plane.reachable:
        lines.append("use_backend %[var(txn.service)] if { var(txn.service) -m found }")
    return _section(f"frontend {FRONTEND}", lines)


def _edge(plane: PlaneConfig) -> list[str]:
    """The engine's header conventions at the edge (mesh.engine.headers), before routing."""
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
    if plane.normalize_path:
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
    if plane.max_body_bytes:
        too_large = body("BodyTooLarge", "DPE", "request body over the limit")
        lines.append(
            f"http-request return status 413 {reply('DPE', too_large)} "
            f"if {{ req.hdr_val(content-length) gt {plane.max_body_bytes} }}"
        )
    lines += [
        "http-request set-header traceparent %[req.fhdr(traceparent,1)] "
        "if { req.fhdr_cnt(traceparent) gt 1 }",
        "http-request del-header traceparent "
        f"unless {{ req.fhdr(traceparent) -m reg {quote(_TRACEPARENT)} }}",
        "http-request set-var(txn.trace) uuid unless { req.fhdr(traceparent) -m found }",
        "http-request set-var(txn.span) uuid unless { req.fhdr(traceparent) -m found }",
        f'http-request set-header traceparent "00-{_TRACE_ID}-{_SPAN_ID}-01" '
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
