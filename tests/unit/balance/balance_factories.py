"""Builders shared by the balancer tests: endpoints, balancers, pick counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from random import Random
from typing import Any

from mesh.balance.balancer import Balancer, make_balancer
from mesh.balance.config import Algorithm, BalanceConfig
from mesh.balance.endpoint import Endpoint

ALGORITHMS: tuple[Algorithm, ...] = (
    "random",
    "round_robin",
    "least_request",
    "least_response_time",
    "consistent_hash",
)


def endpoint(
    instance: str = "i0", weight: int = 1, *, zone: str = "", since: float = 0.0
) -> Endpoint:
    return Endpoint("orders", instance, "10.0.0.1", 9000, weight, zone, {}, since)


def endpoints(*weights: int, since: float = 0.0) -> list[Endpoint]:
    """Endpoints i0, i1, ... with these weights."""
    return [endpoint(f"i{k}", w, since=since) for k, w in enumerate(weights)]


def balancer(algorithm: Algorithm, members: Sequence[Endpoint], **config: Any) -> Balancer:
    b = make_balancer(BalanceConfig(algorithm=algorithm, **config))
    b.update(members)
    return b


def counts(
    b: Balancer, picks: int, *, seed: int = 1, now: float = 0.0, key: bytes | None = None
) -> Counter[str]:
    """How often each instance is picked in `picks` picks."""
    rng = Random(seed)
    return Counter(b.pick(rng, now, key).instance for _ in range(picks))


def sequence(b: Balancer, picks: int, *, seed: int = 1, now: float = 0.0) -> list[str]:
    rng = Random(seed)
    return [b.pick(rng, now).instance for _ in range(picks)]
