"""A node's answer to `mesh explain`: its engine reads the request, its router places it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh.addresses import hostport
from mesh.balance.slow_start import factor
from mesh.engine import head, replies
from mesh.errors import ProxyError
from mesh.forwarding.auth import masked
from mesh.forwarding.directory import Directory, endpoint_of
from mesh.forwarding.explain_policy import policy_in_force, route_in_force
from mesh.forwarding.explanation import (
    Chosen,
    Destination,
    Explanation,
    Instance,
    Question,
)
from mesh.forwarding.policy_routes import PolicyRouter, addressed
from mesh.forwarding.routing import Router
from mesh.forwarding.service_state import Subset
from mesh.membership.view import View
from mesh.policy.auth import ApiKeyAuth
from mesh.policy.compile import ServicePolicy
from mesh.policy.verdicts import Verdict, verdicts


@dataclass(frozen=True, slots=True)
class Vantage:
    """What is explained: the node's router and directory, as its requests use them now."""

    name: str
    role: str
    router: Router
    directory: Directory
    view: View
    revisions: Mapping[str, int]
    normalize_path: bool = True  # its engine's setting (MESH_NORMALIZE_PATH)


@dataclass(slots=True)
class _Asked:
    """The request as routing reads it (mesh.forwarding.routing.RequestHead), API keys masked."""

    method: bytes
    target: bytes
    host: bytes
    headers: list[tuple[bytes, bytes]]
    client: bytes


_Way = tuple[str, int, Subset]


def explain(node: Vantage, question: Question, now: float, wall: float) -> Explanation:
    """The request read by the engine's own parser and checks, then routed as `PolicyRouter`
    routes it, minus auth and rate limits, which it only names (checking them would take a
    client's credentials and spend its tokens); API keys in the query are never shown."""
    revisions = dict(node.revisions)
    router = node.router
    keys = _key_parameters(router)
    shown = masked(question.target.encode("latin-1"), keys)
    chosen, routes, ways = None, list[Verdict](), list[_Way]()
    status, flags, error = 0, "", ""
    try:
        request = head.read(_head(question), normalize_path=node.normalize_path)
        shown = masked(request.target, keys)
        asked = _Asked(request.method, shown, request.host, request.headers, request.client)
        if request.final:
            status, flags, error = 200, "-", "Max-Forwards is 0: the node is the final recipient"
        else:
            routes = _verdicts(router, asked)
            chosen, ways = _routed(router, asked, now, revisions)
            if len(ways) == 1:  # admitted as a request is (404 unknown, 503 at its limit)
                node.directory.admit(ways[0][0]).limit.release()
    except ProxyError as exc:
        status, flags = replies.classify(exc)
        error = exc.detail
    total = sum(weight for _, weight, _ in ways) or 1
    destinations = [
        _destination(node, service, weight, weight / total, subset, now, wall)
        for service, weight, subset in ways
    ]
    return Explanation(
        node=node.name,
        role=node.role,
        at=wall,
        routes=routes,
        chosen=chosen,
        error=error,
        destinations=destinations,
        revisions=revisions,
        method=question.method,
        host=question.host,
        target=shown.decode("latin-1"),
        status=status,
        flags=flags,
    )


def _head(question: Question) -> bytes:
    """The question as a client sends it: HTTP/1.1 with its Host, or HTTP/1.0 (which alone
    may leave it out) without one."""
    version = "1.1" if question.host else "1.0"
    lines = [f"{question.method} {question.target} HTTP/{version}"]
    if question.host:
        lines.append(f"Host: {question.host}")
    lines.extend(f"{name}: {value}" for name, value in question.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _key_parameters(router: Router) -> frozenset[bytes]:
    """The query parameters some route reads an API key from: their values are not shown."""
    if not isinstance(router, PolicyRouter):
        return frozenset()
    return frozenset(
        route.auth.query.encode()
        for route in router.table.routes
        if isinstance(route.auth, ApiKeyAuth) and route.auth.query
    )


def _verdicts(router: Router, asked: _Asked) -> list[Verdict]:
    """Each Route document's verdict on the request; none without a PolicyRouter."""
    if not isinstance(router, PolicyRouter):
        return []
    name, target = addressed(asked)
    return verdicts(router.table, asked.method, name, target, asked.headers)


def _routed(
    router: Router, asked: _Asked, now: float, revisions: Mapping[str, int]
) -> tuple[Chosen, list[_Way]]:
    """The route taken and its ways out; ProxyError as the router raises it (of the route's
    auth, only what no key value decides: two keys in the query)."""
    if isinstance(router, PolicyRouter):
        name, target = addressed(asked)
        matched = router.table.match(asked.method, name, target, asked.headers)
        if matched is not None:
            route = matched.route
            check = router.authenticator(route.name)
            sent = matched.target if check is None else check.forwarded(matched.target)
            ways = [(d.service, d.weight, tuple(sorted(d.subset.items()))) for d in route.to]
            return route_in_force(route, sent, revisions), ways
    # No Route document takes it: the router goes on as it does for a request (the default
    # routes, or a 404 naming the routes considered), with nothing to authenticate or limit.
    routed = router(asked, now)
    chosen = Chosen(
        routed.route,
        by="default",
        revision=None,
        target=routed.target.decode("latin-1"),
        host=None,
        auth="none",
        rate_limit="",
        timeouts={},
    )
    return chosen, [(routed.service, 1, ())]


def _destination(
    node: Vantage, service: str, weight: int, share: float, subset: Subset, now: float, wall: float
) -> Destination:
    directory = node.directory
    policy = directory.policy(service)
    state = directory.state(service)  # made as the first request there would make it
    picked = {e.instance for e in state.candidates(subset)} if state is not None else set()
    balancer = state.balancer(subset) if state is not None else None
    instances = []
    for instance, member in sorted(node.view.members.items()):
        endpoint = endpoint_of(member)
        if member.record.role != "agent" or endpoint.service != service:
            continue
        if not endpoint.fits(subset):
            continue
        until = state.ejections.until(instance, now) if state is not None else None
        warmth = _warmth(policy, member.since, now)
        instances.append(
            Instance(
                instance=instance,
                address=hostport(*endpoint.address),
                state=member.state.value,
                health=member.record.health,
                candidate=instance in picked,
                zone=endpoint.zone,
                weight=endpoint.weight,
                version=endpoint.version,
                ejected_until=None if until is None else wall + (until - now),
                in_flight=balancer.in_flight(instance) if balancer is not None else None,
                slow_start=warmth if warmth < 1.0 else None,
            )
        )
    return Destination(
        service=service,
        weight=weight,
        share=round(share, 4),
        subset=dict(subset),
        known=state is not None,
        policy=policy_in_force(policy, node.revisions.get(f"service.{service}")),
        in_flight=state.limit.active if state is not None else 0,
        panicking=state.panicking if state is not None else False,
        instances=instances,
    )


def _warmth(policy: ServicePolicy, since: float, now: float) -> float:
    balance = policy.balance
    if balance.algorithm == "consistent_hash":
        return 1.0  # make_balancer gives it no ramp: weights would move keys
    return factor(since, now, balance.slow_start_window, balance.slow_start_aggression)
