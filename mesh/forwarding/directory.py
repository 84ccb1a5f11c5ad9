"""The forwarding path's read side of the view: each service's endpoints, balancers, ejections."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from mesh.balance.endpoint import Endpoint
from mesh.errors import NoHealthyUpstream, NoRoute, Overflow
from mesh.forwarding.service_state import ServiceState
from mesh.forwarding.upstream_counters import UpstreamCounters
from mesh.membership.view import Member, State, View
from mesh.messages import Evidence
from mesh.policy.compile import Compiled, ServicePolicy
from mesh.resilience.outcome import Outcome
from mesh.resilience.outlier import Capped, Effect, Ejected, Restored

# (service, effect, the evidence that caused it or None): the shell names events after it.
EjectionListener = Callable[[str, Ejected | Restored, Evidence | None], None]


def endpoint_of(member: Member) -> Endpoint:
    """A member of the view as the balancers see it; slow start counts from its `since`."""
    r = member.record
    return Endpoint(
        r.service,
        r.instance,
        r.host,
        r.port,
        r.weight,
        r.zone,
        r.meta,
        member.since,
        r.version,
        r.inbound_port,
    )


@dataclass(frozen=True, slots=True)
class _Members:
    everyone: tuple[Endpoint, ...]  # alive agents, healthy or not (the panic threshold's base)
    routable: frozenset[str]  # instance ids passing their checks and not draining


class Directory:
    """Rebuilt when the view or the policies change; read on every request."""

    def __init__(self, *, node: str = "", compiled: Compiled | None = None) -> None:
        self.node = node
        self._compiled = compiled or Compiled(routes=None, services={}, default=ServicePolicy())
        self._members: dict[str, _Members] = {}
        self._states: dict[str, ServiceState] = {}
        self._known: set[str] = set()  # services with an agent in the view, even a tombstone
        # Routable endpoints at each address, across services: a pool closes at none.
        self._routed: collections.Counter[tuple[str, int]] = collections.Counter()
        self.version = -1
        self._lineage: object = None  # of the view adopted last
        self.on_ejection: EjectionListener | None = None  # the shell turns these into events
        self.on_evidence: Callable[[Evidence], None] | None = None  # ... and publishes these
        self.capped = 0  # ejections refused by a cap, for metrics
        self.counters = UpstreamCounters()  # per instance, for metrics

    # --- inputs ---

    def update(self, view: View, now: float = 0.0) -> set[tuple[str, int]]:
        """Adopt `view`; returns the addresses no longer routable anywhere (to close pools).

        A view derived from the one adopted last names the services changed since that
        version: only those are rebuilt. Any other view is adopted whole.
        """
        if view.lineage is self._lineage and view.changed_since == self.version:
            services: Set[str] = view.changed
        else:
            services = view.services.keys() | self._known | self._members.keys()
        unrouted: set[tuple[str, int]] = set()
        for service in services:
            self._rebuild(view, service, now, unrouted)
        self.counters.retain(view.members.keys())  # tombstones keep theirs until forgotten
        self.version = view.version
        self._lineage = view.lineage
        gone = {address for address in unrouted if self._routed[address] <= 0}
        for address in gone:
            del self._routed[address]
        return gone

    def _rebuild(
        self, view: View, service: str, now: float, unrouted: set[tuple[str, int]]
    ) -> None:
        """One service's endpoints from the view; the addresses it stopped routing to go
        into `unrouted` (another service may still route to them)."""
        everyone: list[Endpoint] = []
        routable: set[str] = set()
        known = False
        for member in sorted(view.of_service(service), key=lambda m: m.instance):
            if member.record.role != "agent":
                continue
            known = True
            if member.state is State.ALIVE and not member.record.draining:
                everyone.append(endpoint_of(member))
                if member.routable:
                    routable.add(member.instance)
        before = self._members.pop(service, None)
        if before is not None:
            for endpoint in before.everyone:
                if endpoint.instance in before.routable:
                    self._routed[endpoint.address] -= 1
                    unrouted.add(endpoint.address)
        members = _Members(tuple(everyone), frozenset(routable))
        if everyone:
            self._members[service] = members
            for endpoint in everyone:
                if endpoint.instance in routable:
                    self._routed[endpoint.address] += 1
        if known:
            self._known.add(service)
            state = self._states.get(service)
            if state is not None:
                state.refresh(members.everyone, members.routable, now)
        else:
            self._known.discard(service)
            self._states.pop(service, None)

    def set_policies(self, compiled: Compiled) -> None:
        """A new policy revision: services whose policy changed start afresh."""
        self._compiled = compiled
        for service in list(self._states):
            if self._states[service].policy != compiled.policy(service):
                del self._states[service]  # rebuilt on next use with the new policy

    def receive_evidence(self, evidence: Evidence, now: float) -> None:
        """Another observer (or we) saw an instance fail: maybe eject it here too."""
        state = self.state(evidence.service) if evidence.service in self._members else None
        if state is None or not state.has(evidence.instance):
            return  # not in our view: nothing to eject
        self._effects(state, state.jury_receives(evidence, now), now, evidence)

    def tick(self, now: float) -> None:
        """Restore instances whose ejection ran out."""
        for state in list(self._states.values()):
            restored = state.expire(now)
            if restored:
                self._effects(state, restored, now)

    # --- the hot path ---

    @property
    def compiled(self) -> Compiled:
        """The revision in force."""
        return self._compiled

    def policy(self, service: str) -> ServicePolicy:
        """The current revision's policy for calls to `service`."""
        return self._compiled.policy(service)

    def knows(self, service: str) -> bool:
        return service in self._known

    @property
    def known(self) -> frozenset[str]:
        """The services with an agent in the view."""
        return frozenset(self._known)

    def state(self, service: str) -> ServiceState | None:
        state = self._states.get(service)
        if state is None:
            if service not in self._known:
                return None
            state = ServiceState(service, self._compiled.policy(service), self.node)
            members = self._members.get(service)
            if members is not None:
                state.refresh(members.everyone, members.routable, 0.0)
            self._states[service] = state
        return state

    def admit(self, service: str) -> ServiceState:
        """The state of a service a request is going to, with a slot of its concurrency limit.

        NoRoute if no such service is known, Overflow when its limit is reached; the
        caller gives the slot back with `state.limit.release()`.
        """
        state = self.state(service)
        if state is None:
            raise NoRoute(f"no service named {service!r}", service=service, unknown=(service,))
        if not state.limit.try_acquire():
            raise Overflow(
                f"{state.limit.limit} requests to {service!r} already in flight", service=service
            )
        return state

    def pick(
        self,
        state: ServiceState,
        rng: random.Random,
        now: float,
        subset: tuple[tuple[str, str], ...],
        exclude: Set[str],
        key: bytes | None,
    ) -> Endpoint:
        """One endpoint of an admitted service, not in `exclude`; NoHealthyUpstream if none."""
        endpoint = state.pick(rng, now, subset, exclude, key)
        if endpoint is None:
            where = "" if not subset else " with " + ", ".join(f"{k}={v}" for k, v in subset)
            raise NoHealthyUpstream(
                f"no healthy instance of {state.name!r}{where}", service=state.name
            )
        return endpoint

    def observe(
        self, state: ServiceState, endpoint: Endpoint, outcome: Outcome, now: float
    ) -> None:
        """One attempt's outcome: outlier detection here, evidence for the others."""
        effects, evidence = state.observe(endpoint.instance, outcome, now)
        if effects:
            self._effects(state, effects, now)
        if evidence is not None and self.on_evidence is not None:
            self.on_evidence(evidence)

    def _effects(
        self,
        state: ServiceState,
        effects: Sequence[Effect],
        now: float,
        evidence: Evidence | None = None,
    ) -> None:
        changed = False
        for effect in effects:
            if isinstance(effect, Capped):
                self.capped += 1
                continue
            changed = True
            if isinstance(effect, Ejected):
                ejections = self.counters.of(state.name, effect.instance).ejections
                ejections[effect.reason] = ejections.get(effect.reason, 0) + 1
            if self.on_ejection is not None:
                self.on_ejection(state.name, effect, evidence)
        if changed:
            members = self._members.get(state.name)
            if members is not None:
                state.refresh(members.everyone, members.routable, now)

    def describe(self, now: float) -> dict[str, object]:
        """Every service this node has called: its instances as the balancer sees them."""
        out: dict[str, object] = {}
        for name, state in sorted(self._states.items()):
            members = self._members.get(name)
            everyone = members.everyone if members else ()
            out[name] = {
                "algorithm": state.policy.balance.algorithm,
                "panicking": state.panicking,
                "in_flight": state.limit.active,
                "max_requests": state.limit.limit,
                "instances": [
                    {
                        "instance": e.instance,
                        "address": f"{e.host}:{e.port}",
                        "healthy": members is not None and e.instance in members.routable,
                        "ejected": state.ejections.is_ejected(e.instance, now),
                    }
                    for e in everyone
                ],
            }
        return out

    def in_flight(self) -> dict[str, int]:
        """Requests in flight to each service this node has called."""
        return {name: state.limit.active for name, state in self._states.items()}

    def is_ejected(self, service: str, instance: str, now: float) -> bool:
        state = self._states.get(service)
        return state is not None and state.ejections.is_ejected(instance, now)

    def ejected_counts(self) -> dict[str, int]:
        return {name: state.ejections.count for name, state in self._states.items()}

    def in_flight_counts(self) -> dict[str, int]:
        return {name: state.limit.active for name, state in self._states.items()}
