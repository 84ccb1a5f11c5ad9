"""Backends in HAProxy's words: balancing, timeouts, retries, limits and servers per service."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.haproxy.layout import ANSWERS_TABLE, Backend, Server
from mesh.haproxy.replies_cfg import SERVER_ERRORS, body, http_errors, reply, text
from mesh.haproxy.routes_cfg import IDEMPOTENT, is_route
from mesh.haproxy.words import address, ms
from mesh.policy.compile import Compiled, ServicePolicy
from mesh.resilience.retry import Condition

# What each retry condition of mesh.resilience.retry covers, in `retry-on` keywords.
# HAProxy's conn-failure takes connect timeouts and refusals alike.
NO_ANSWER = ("conn-failure", "empty-response", "response-timeout")
RETRY_ON: dict[str, tuple[str, ...]] = {
    "connect-failure": ("conn-failure",),
    "refused": ("conn-failure",),
    "reset": NO_ANSWER,
    "timeout": ("conn-failure", "response-timeout"),
    "5xx": (*NO_ANSWER, "500", "501", "502", "503", "504"),
    "gateway-error": (*NO_ANSWER, "502", "503", "504"),
}
RETRY_STATUSES = frozenset({401, 403, 404, 408, 425, 500, 501, 502, 503, 504})

BALANCE = {
    "round_robin": "roundrobin",
    "least_request": "random(2)",  # the less busy of two drawn at random (P2C)
    "random": "random(1)",  # HAProxy's plain `random` draws two
    "least_response_time": "leastconn",
}

# Every server watches its own traffic: the first failed connection marks it down (and
# HAProxy logs it, which the gateway turns into evidence for the mesh). The check exists
# only because `observe` needs one; an hour apart it never competes with the traffic.
SERVER_DEFAULTS = "check inter 1h observe layer4 error-limit 1 on-error mark-down"


# With sampled logs, every answer of a server gets the next number of its name (one count
# for the instance across the backends, subsets, it is in) before the frontend decides
# whether to log it: a gap between two logged numbers shows answers the gateway did not
# see, which end a 5xx streak (mesh.haproxy.answer_order). Same-named instances of two
# services would share a count, which only adds gaps. Two rules on each server's answer.
NUMBERED = (
    f"http-response track-sc0 srv_name table {ANSWERS_TABLE}",
    "http-response set-var(txn.answer) sc_inc_gpc0(0)",
)


def retry_on(on: frozenset[Condition]) -> str:
    words: list[str] = []
    for condition in sorted(on, key=str):
        for word in RETRY_ON[condition] if isinstance(condition, str) else (str(condition),):
            if word not in words:
                words.append(word)
    return " ".join(words) if words else "none"


def balance(policy: ServicePolicy) -> list[str]:
    config = policy.balance
    if config.algorithm != "consistent_hash":
        return [f"balance {BALANCE[config.algorithm]}"]
    source = config.hash_on
    if source.kind == "header":
        how = f"hdr({source.name.lower()})"
    elif source.kind == "cookie":
        how = f"hash req.cook({source.name})"
    else:
        how = "source"
    return [f"balance {how}", "hash-type consistent"]


def server_line(server: Server) -> str:
    weight = 0 if server.state == "drain" else server.weight
    line = f"server {server.name} {address(server.host, server.port)} weight {weight}"
    return line + " disabled" if server.state == "maint" else line


def section(
    compiled: Compiled, backend: Backend, servers: Sequence[Server], *, numbered: bool = False
) -> str:
    """The `backend` section of one (service, subset); `numbered`: its answers (NUMBERED)."""
    policy = compiled.policy(backend.service)
    resilience = policy.resilience
    retry = resilience.retry
    per_try = retry.per_try_timeout or resilience.request_timeout
    lines = [
        *balance(policy),
        f"timeout connect {ms(resilience.connect_timeout)}",
        f"timeout server {ms(min(per_try, resilience.request_timeout))}",
        f"retries {retry.attempts}",
        f"retry-on {retry_on(retry.on) if retry.attempts else 'none'}",
        "option redispatch 1",
        # Sent requests are retried only when idempotent, as the engine does.
        f"http-request disable-l7-retry unless {{ method {IDEMPOTENT} }}",
        f"http-request set-header host {backend.service} unless {{ req.hdr(host) -m found }}",
        *_route_timeouts(compiled, backend, policy),
        # The engine's concurrency limit per caller: this backend's requests in flight.
        f"http-request return status 503 {_overflow(backend, resilience.max_requests)}",
        # An old worker finishing its clients' last requests after a reload counts no
        # server usable (its backends are stopping): it forwards them all the same.
        f"http-request return status 503 {_no_server(backend)} if {{ nbsrv eq 0 }} !{{ stopping }}",
        *http_errors(SERVER_ERRORS, backend.service),
        f"default-server {SERVER_DEFAULTS}{_slow_start(policy)}",
        *(NUMBERED if numbered else ()),
        *(server_line(server) for server in servers),
    ]
    return "\n    ".join([f"backend {backend.name}", *lines]) + "\n"


def _slow_start(policy: ServicePolicy) -> str:
    window = policy.balance.slow_start_window
    return f" slowstart {ms(window)}" if window else ""


def _overflow(backend: Backend, limit: int) -> str:
    detail = text(f"{limit} requests to {backend.service!r} already in flight")
    lf = body("Overflow", "UO", detail, backend.service)
    return f"{reply('UO', lf)} if {{ be_conn gt {limit} }}"


def _no_server(backend: Backend) -> str:
    where = "".join(f", {k}={v}" for k, v in backend.subset).replace(", ", " with ", 1)
    detail = text(f"no healthy instance of {backend.service!r}{where}")
    return reply("UH", body("NoHealthyUpstream", "UH", detail, backend.service))


def _route_timeouts(compiled: Compiled, backend: Backend, policy: ServicePolicy) -> list[str]:
    """A route's request/per_try timeouts over the service's, for the routes sending here."""
    if compiled.routes is None:
        return []
    lines = []
    retry, resilience = policy.resilience.retry, policy.resilience
    for route in compiled.routes.routes:
        timeouts = route.timeouts
        if timeouts is None or (timeouts.request is None and timeouts.per_try is None):
            continue
        if not any(d.service == backend.service for d in route.to):
            continue
        request = timeouts.request or resilience.request_timeout
        per_try = timeouts.per_try or retry.per_try_timeout or request
        lines.append(
            f"http-request set-timeout server {ms(min(per_try, request))} if {is_route(route.name)}"
        )
    return lines
