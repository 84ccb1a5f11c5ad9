"""The HAProxy configuration of a gateway: pure, from a compiled policy revision and the view."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mesh.haproxy import backends_cfg, routes_cfg
from mesh.haproxy.default_routes_cfg import ABSOLUTE, default_routes, no_route
from mesh.haproxy.edge_cfg import RESPONSE_DUTIES, edge
from mesh.haproxy.layout import (
    ANSWERS_TABLE,
    FRONTEND,
    Backend,
    Server,
    backend_name,
    log_format,
)
from mesh.haproxy.replies_cfg import AFTER_RESPONSE, CLIENT_ERRORS, http_errors
from mesh.haproxy.words import address, ms
from mesh.policy.compile import Compiled

_REVISION = re.compile(r"[A-Za-z0-9._:-]{1,128}")


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
    numbered = plane.log_sample > 1
    if numbered:
        sections.append(_section(f"backend {ANSWERS_TABLE}", [ANSWERS_STORE]))
    sections.extend(
        backends_cfg.section(compiled, backend, servers.get(backend.name, ()), numbered=numbered)
        for backend in backends(compiled, plane)
    )
    return "\n".join(sections)


# A number per instance (the key is the server's name, at most 128 characters): an entry
# pushed out when full, or lost with a reload, only breaks a streak the gateway counts.
ANSWERS_STORE = "stick-table type string len 128 size 20k store gpc0"


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
    lines.append(f'log-format "{log_format(numbered=plane.log_sample > 1)}"')
    # The flags of every answer, the proxy's own included, for the log line.
    lines.append("http-after-response set-var(txn.flags) res.hdr(x-mesh-flags)")
    lines += RESPONSE_DUTIES
    if plane.log_sample > 1:  # the gateway counts each such line log_sample times
        lines.append(  # an instance's answers only (numbered first, backends_cfg.NUMBERED)
            "http-response set-log-level silent "
            f"if {{ status lt 500 }} {{ rand({plane.log_sample}) gt 0 }}"
        )
    lines += edge(plane.normalize_path, plane.max_body_bytes)
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
