"""The balancer protocol every algorithm implements, and the factory from a BalanceConfig."""

from __future__ import annotations

from collections.abc import Sequence, Set
from random import Random
from typing import Protocol

from mesh.balance.config import BalanceConfig
from mesh.balance.consistent_hash import ConsistentHash
from mesh.balance.endpoint import Endpoint
from mesh.balance.least_request import LeastRequest
from mesh.balance.least_response_time import LeastResponseTime
from mesh.balance.round_robin import RoundRobin
from mesh.balance.slow_start import Ramp
from mesh.balance.weighted_random import WeightedRandom


class Balancer(Protocol):
    """Picks one endpoint of one service per request; deterministic given `rng` and `now`.

    Call `update` before the first pick and whenever the set changes (state of each
    endpoint is kept by instance id); `pick` needs at least one endpoint: failing fast
    on none is the caller's. Call `on_start` right after the pick it follows, and
    `on_end` on the same balancer once the response (or failure) is in.
    """

    def update(self, endpoints: Sequence[Endpoint]) -> None: ...

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        """`key`: consistent_hash's (None: at random); `exclude`: instance ids tried already
        (a retry goes elsewhere, unless every endpoint was tried)."""
        ...

    def on_start(self, endpoint: Endpoint, now: float) -> None: ...

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None: ...

    def in_flight(self, instance: str) -> int | None:
        """Requests in flight to `instance` from here; None if the algorithm does not count."""
        ...


def make_balancer(config: BalanceConfig) -> Balancer:
    ramp = Ramp(config.slow_start_window, config.slow_start_aggression)
    match config.algorithm:
        case "random":
            return WeightedRandom(ramp)
        case "round_robin":
            return RoundRobin(ramp)
        case "least_request":
            return LeastRequest(ramp)
        case "least_response_time":
            return LeastResponseTime(ramp, config.ewma_decay, config.default_rtt)
        case "consistent_hash":
            # No slow start: changing weights would move keys between endpoints.
            return ConsistentHash()
