"""A node's explanation of one request as text for terminals."""

from __future__ import annotations

import time

from mesh.forwarding.explanation import Chosen, Destination, Explanation, Instance, Policy
from mesh.membership.roster import columns

_HEADER: tuple[str, ...] = ("INSTANCE", "STATE", "HEALTH", "PICKABLE", "ZONE", "WEIGHT")
_HEADER += ("IN-FLIGHT", "EJECTED", "SLOW-START", "ADDRESS")


def render(answer: Explanation) -> str:
    """What the route, the services and their instances are for this request, and why."""
    asked = f"{answer.method} {answer.host or '(no host)'} {answer.target}"
    lines = [f"{answer.node} ({answer.role}) on {asked}:"]
    if answer.routes:
        lines.append("routes, in the order tried:")
        cells = [("", "ROUTE", "VERDICT", "WHY")]
        for verdict in answer.routes:
            mark = "->" if verdict.outcome == "matched" else ""
            cells.append((mark, verdict.route, verdict.outcome, verdict.reason))
        lines += _indented(columns(cells))
    if answer.error:
        said = f"{answer.status} {answer.flags}"
        lines.append(f"goes nowhere: {answer.node} answers {said} ({answer.error})")
    if answer.chosen is not None:
        lines.append(_chosen(answer.chosen))
    if len(answer.destinations) > 1:
        lines.append("each request goes to one destination, chosen at random by weight:")
    for destination in answer.destinations:
        lines += _destination(destination, answer.at)
    return "\n".join(lines)


def _chosen(chosen: Chosen) -> str:
    if chosen.by == "default":
        return f"default route ({chosen.route}): sends {chosen.target}"
    said = [f"route {chosen.route} ({_revision(chosen.revision)}): sends {chosen.target}"]
    if chosen.host:
        said.append(f"with Host {chosen.host}")
    said.append(f"auth {chosen.auth}")
    said.append(f"rate limit {chosen.rate_limit or 'none'}")
    if chosen.timeouts:
        given = ", ".join(f"{k} {_s(v)}" for k, v in chosen.timeouts.items())
        said.append(f"timeouts {given} (over the service's)")
    return "; ".join(said)


def _destination(destination: Destination, at: float) -> list[str]:
    subset = ", ".join(f"{k}={v}" for k, v in destination.subset.items())
    head = f"service {destination.service}" + (f" [{subset}]" if subset else "")
    head += f": {destination.share:.0%} of requests (weight {destination.weight})"
    lines = [head, *_indented(_policy(destination.policy))]
    if not destination.known:
        return [*lines, "  not in this node's view: requests get 404 (no such service)"]
    in_flight = f"{destination.in_flight} of {destination.policy.max_requests} in flight"
    lines.append(
        f"  {in_flight}"
        + ("; PANIC: balancing over every instance" if destination.panicking else "")
    )
    cells = [_HEADER, *(_instance(instance, at) for instance in destination.instances)]
    lines += _indented(columns(cells) if destination.instances else "no instances")
    return lines


def _policy(policy: Policy) -> str:
    per_try = _s(policy.per_try_timeout) if policy.per_try_timeout else "-"
    outlier = policy.outlier
    ejection = f"{_s(outlier['base_ejection'])}..{_s(outlier['max_ejection'])}"
    access = ", ".join(policy.allow_from) if policy.allow_from is not None else "any caller"
    return "\n".join(
        (
            f"policy: {_revision(policy.revision, 'Service')}",
            f"balance {policy.algorithm}, zone-aware {policy.zone or 'off'}, "
            f"slow start {_s(policy.slow_start) if policy.slow_start else 'off'}, "
            f"panic below {policy.panic_threshold:.0%} healthy",
            f"timeouts connect {_s(policy.connect_timeout)}, "
            f"request {_s(policy.request_timeout)}, per try {per_try}; "
            f"retries {policy.retries} on {', '.join(policy.retry_on) or '-'}",
            f"ejection after {outlier['consecutive_5xx']:g} 5xx or "
            f"{outlier['consecutive_gateway_errors']:g} gateway errors in a row, for {ejection}, "
            f"at most {outlier['max_ejected_percent']:g}%; max requests {policy.max_requests}; "
            f"access from {access}",
        )
    )


def _instance(instance: Instance, at: float) -> tuple[str, ...]:
    ejected = "-"
    if instance.ejected_until is not None:
        left = _s(max(0.0, instance.ejected_until - at))
        ejected = (
            f"until {time.strftime('%H:%M:%S', time.localtime(instance.ejected_until))} ({left})"
        )
    warm = "-" if instance.slow_start is None else f"{instance.slow_start:.0%} of weight"
    return (
        instance.instance,
        instance.state,
        instance.health,
        "yes" if instance.candidate else "no",
        instance.zone or "-",
        str(instance.weight),
        "-" if instance.in_flight is None else str(instance.in_flight),
        ejected,
        warm,
        instance.address,
    )


def _revision(revision: int | None, kind: str = "Route") -> str:
    return f"revision {revision}" if revision is not None else f"no {kind} document: node settings"


def _s(seconds: float) -> str:
    return f"{seconds:.3g}s"


def _indented(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]
