"""Where a request would go from this node and why, from the router and directory it uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh.addresses import hostport
from mesh.balance.slow_start import factor
from mesh.errors import ProxyError
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
from mesh.policy.compile import ServicePolicy
from mesh.policy.verdicts import verdicts


@dataclass(frozen=True, slots=True)
class Vantage:
    """What is explained: the node's router and directory, as its requests use them now."""

    name: str
    role: str
    router: Router
    directory: Directory
    view: View
    revisions: Mapping[str, int]


@dataclass(slots=True)
class _Asked:
    """The question as the request head routing reads (mesh.forwarding.routing.RequestHead)."""

    method: bytes
    target: bytes
    host: bytes
    headers: list[tuple[bytes, bytes]]
    client: bytes = b""


def explain(node: Vantage, question: Question, now: float, wall: float) -> Explanation:
    """Routing as `PolicyRouter` does it, minus auth and rate limits, which it only names
    (checking them would take a client's credentials and spend its tokens)."""
    asked = _Asked(
        question.method.encode(),
        question.target.encode("latin-1"),
        question.host.encode("latin-1"),
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in question.headers],
    )
    revisions = dict(node.revisions)
    router, chosen, routes, ways = node.router, None, [], list[tuple[str, int, Subset]]()
    try:
        if isinstance(router, PolicyRouter):
            name, target = addressed(asked)
            routes = verdicts(router.table, asked.method, name, target, asked.headers)
            matched = router.table.match(asked.method, name, target, asked.headers)
            if matched is not None:
                chosen = route_in_force(matched.route, matched.target, revisions)
                ways = [
                    (d.service, d.weight, tuple(sorted(d.subset.items()))) for d in matched.route.to
                ]
            fallback = router.fallback
        else:
            fallback = router
        if chosen is None and fallback is not None:
            routed = fallback(asked, now)
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
            ways = [(routed.service, 1, ())]
        error = "" if chosen is not None else "no route matches, and default routes are off"
    except ProxyError as exc:
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
        target=question.target,
    )


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
