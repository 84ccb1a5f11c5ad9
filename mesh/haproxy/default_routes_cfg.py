"""The default routes (mesh.forwarding.routing.DefaultRoutes) and the 404 NR in HAProxy's words."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.haproxy.replies_cfg import body, reply
from mesh.haproxy.routes_cfg import UNMATCHED, is_route

ABSOLUTE = "{ url -m beg -i http:// }"
SEGMENT = "path,field(2,/)"
# HAProxy takes at most 64 words a line: long name lists go on several lines of one ACL.
_PER_LINE = 48


def default_routes(services: Sequence[str]) -> list[str]:
    """Rules naming the service by absolute URL, Host or first path segment, in that order.

    An absolute-form request goes by its authority only (HAProxy makes Host agree with
    it); the segment is stripped (`/hello/x` reaches hello as `/x`, `/hello` as `/`).
    """
    if not services:
        return []
    lines = []
    for start in range(0, len(services), _PER_LINE):
        names = " ".join(services[start : start + _PER_LINE])
        # `--`: a service named `-f` (names may start with '-') is a name, not a flag.
        lines.append(f"acl known_host var(txn.host) -m str -- {names}")
        lines.append(f"acl known_segment {SEGMENT} -m str -- {names}")
    by_host = f"{is_route('absolute')} || {is_route('host')}"
    lines += [
        f"http-request set-var(txn.route) str(absolute) if {UNMATCHED} {ABSOLUTE} known_host",
        f"http-request set-var(txn.route) str(host) if {UNMATCHED} !{ABSOLUTE} known_host",
        f"http-request set-var(txn.route) str(path) if {UNMATCHED} !{ABSOLUTE} known_segment",
        f"http-request set-var(txn.service) var(txn.host) if {by_host}",
        f"http-request set-var(txn.service) {SEGMENT} if {is_route('path')}",
        # Whatever follows the first segment (fields from the third, all of them).
        f"http-request set-path /%[path,field(3,/,0)] if {is_route('path')}",
    ]
    return lines


def no_route(default_routes: bool) -> str:
    """The 404 NR for a request that no route took, with the engine's detail."""
    path = "%[path,json(ascii)]"
    if default_routes:
        detail = f"no service matches Host '%[var(txn.host),json(ascii)]' or path '{path}'"
    else:
        detail = f"no route matches %[method,json(ascii)] {path}"
    answer = reply("NR", body("NoRoute", "NR", detail))
    return f"http-request return status 404 {answer} if {UNMATCHED}"
