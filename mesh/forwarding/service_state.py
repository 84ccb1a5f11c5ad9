"""One service as this node calls it: balancers, ejections, limit and budget, decided purely."""

from __future__ import annotations

import random
from collections.abc import Sequence, Set

from mesh.balance.balancer import Balancer, make_balancer
from mesh.balance.endpoint import Endpoint
from mesh.balance.subset import candidates
from mesh.messages import Evidence
from mesh.policy.compile import ServicePolicy
from mesh.resilience.budget import RetryBudget
from mesh.resilience.evidence import Jury, Publisher
from mesh.resilience.limits import ConcurrencyLimit
from mesh.resilience.outcome import Kind, Outcome
from mesh.resilience.outlier import Effect, Ejections, Restored

Subset = tuple[tuple[str, str], ...]  # instance metadata a route requires, sorted

_NO_EFFECTS: Sequence[Effect] = ()


class ServiceState:
    """Mutable for speed, but every decision takes `now` and the rng: no clock, no I/O."""

    __slots__ = (
        "_balancers",
        "_by_id",
        "_candidates",
        "_everyone",
        "budget",
        "ejections",
        "hash_on",
        "jury",
        "limit",
        "name",
        "panicking",
        "policy",
        "publisher",
    )

    def __init__(self, name: str, policy: ServicePolicy, node: str) -> None:
        self.name = name
        self.policy = policy
        resilience = policy.resilience
        balance = policy.balance
        self.ejections = Ejections(resilience.outlier)
        self.limit = ConcurrencyLimit(resilience.max_requests)
        self.budget = RetryBudget(resilience.budget)
        self.publisher = Publisher(resilience.evidence, name, node or "node")
        self.jury = Jury(resilience.evidence)
        self._everyone: tuple[Endpoint, ...] = ()
        self._by_id: dict[str, Endpoint] = {}
        self._candidates: Sequence[Endpoint] = ()
        self._balancers: dict[Subset, tuple[Balancer, Sequence[Endpoint]]] = {}
        self.panicking = False
        # What consistent_hash keys on; None for the algorithms that need no key.
        self.hash_on = balance.hash_on if balance.algorithm == "consistent_hash" else None

    def has(self, instance: str) -> bool:
        return instance in self._by_id

    @property
    def everyone(self) -> tuple[Endpoint, ...]:
        """Every alive, not draining instance, healthy or not (the panic threshold's base)."""
        return self._everyone

    def endpoint(self, instance: str) -> Endpoint | None:
        """One of `everyone`, by its instance id."""
        return self._by_id.get(instance)

    @property
    def total(self) -> int:
        return len(self._everyone)

    def refresh(self, everyone: tuple[Endpoint, ...], routable: frozenset[str], now: float) -> None:
        """New members or ejections: recompute who may be picked and feed the balancers."""
        by_id = {e.instance: e for e in everyone}
        gone = self._by_id.keys() - by_id.keys()
        for instance in gone:
            self.ejections.forget(instance)
            self.publisher.forget(instance)
            self.jury.forget(instance)
        self._everyone = everyone
        self._by_id = by_id
        healthy = [
            e
            for e in everyone
            if e.instance in routable and not self.ejections.is_ejected(e.instance, now)
        ]
        if healthy:
            self._candidates, self.panicking = candidates(self.policy.balance, everyone, healthy)
        else:
            # Fail fast: with nothing healthy, panic would only send requests
            # to instances known to fail them.
            self._candidates, self.panicking = (), False
        for subset in list(self._balancers):
            self._feed(subset)

    def _feed(self, subset: Subset) -> Sequence[Endpoint]:
        chosen = self._candidates if not subset else [e for e in self._candidates if e.fits(subset)]
        entry = self._balancers.get(subset)
        balancer = entry[0] if entry else make_balancer(self.policy.balance)
        if chosen:
            balancer.update(chosen)
        self._balancers[subset] = (balancer, chosen)
        return chosen

    def balancer(self, subset: Subset) -> Balancer:
        return self._balancers[subset][0]

    def candidates(self, subset: Subset) -> Sequence[Endpoint]:
        """What `pick` chooses among for `subset`: routable, not ejected, panic and zone applied."""
        entry = self._balancers.get(subset)
        return entry[1] if entry is not None else self._feed(subset)

    def pick(
        self,
        rng: random.Random,
        now: float,
        subset: Subset,
        exclude: Set[str],
        key: bytes | None,
    ) -> Endpoint | None:
        chosen = self.candidates(subset)
        if not chosen:
            return None
        return self._balancers[subset][0].pick(rng, now, key, exclude)

    def untried(self, subset: Subset, tried: Set[str]) -> bool:
        """Whether an instance that `pick` may choose for `subset` is not in `tried`."""
        entry = self._balancers.get(subset)
        return entry is not None and any(e.instance not in tried for e in entry[1])

    def observe(
        self, instance: str, outcome: Outcome, now: float
    ) -> tuple[Sequence[Effect], Evidence | None]:
        """Outlier bookkeeping and whether the sighting is worth telling the mesh."""
        if (
            outcome.status < 500
            and outcome.kind is Kind.RESPONSE
            and not self.ejections.failing
            and not self.publisher.failing
        ):
            return _NO_EFFECTS, None  # the usual case: all is well and stays so
        if instance not in self._by_id:
            return _NO_EFFECTS, None  # it left meanwhile
        effects = self.ejections.observe(instance, outcome, now, self.total)
        return effects, self.publisher.should_publish(instance, outcome, now)

    def jury_receives(self, evidence: Evidence, now: float) -> Sequence[Effect]:
        return self.jury.receive(evidence, now, self.total, self.ejections)

    def expire(self, now: float) -> list[Restored]:
        return self.ejections.expire(now)
