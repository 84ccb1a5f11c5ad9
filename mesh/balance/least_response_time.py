"""Least response time: peak-EWMA power of two choices, as Linkerd and Finagle."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from random import Random

from mesh.balance.endpoint import Endpoint
from mesh.balance.p2c import Load, carry, pair
from mesh.balance.slow_start import Ramp


def observe(estimate: float, elapsed: float, rtt: float, decay: float) -> float:
    """The estimate after a response of `rtt` seconds, `elapsed` seconds after the last one.

    A slower response replaces the estimate at once (the peak); a faster one blends in
    with weight 1 - exp(-elapsed/decay), so it takes about `decay` seconds to pull it down.
    """
    if rtt >= estimate:
        return rtt
    kept = math.exp(-max(elapsed, 0.0) / decay)
    return estimate * kept + rtt * (1.0 - kept)


def fade(estimate: float, elapsed: float, decay: float) -> float:
    """The estimate `elapsed` seconds after the last response, decaying towards zero.

    An endpoint made to look slow by one response then gets no traffic to correct it;
    fading lets it be tried again (Finagle's PeakEwma and tower's do the same).
    """
    return estimate * math.exp(-max(elapsed, 0.0) / decay)


class Latency(Load):
    __slots__ = ("estimate", "stamp")

    def __init__(self, default_rtt: float) -> None:
        super().__init__()
        self.estimate = default_rtt
        self.stamp: float | None = None  # when the last response ended; None: no sample yet


class LeastResponseTime:
    """P2C on cost = rtt estimate * (active + 1) / weight, the lower the better."""

    __slots__ = ("_by_instance", "_decay", "_default_rtt", "_endpoints", "_latencies", "_ramp")

    def __init__(self, ramp: Ramp | None, decay: float, default_rtt: float) -> None:
        self._ramp = ramp or Ramp()
        self._decay = decay
        self._default_rtt = default_rtt
        self._endpoints: tuple[Endpoint, ...] = ()
        self._by_instance: dict[str, Latency] = {}
        self._latencies: list[Latency] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._by_instance = carry(
            self._by_instance, self._endpoints, lambda: Latency(self._default_rtt)
        )
        self._latencies = [self._by_instance[e.instance] for e in self._endpoints]
        self._ramp.reset(self._endpoints)

    def cost(self, index: int, now: float) -> float:
        """Of the endpoint at `index`, before its weight: the estimate times (active + 1)."""
        latency = self._latencies[index]
        estimate = latency.estimate
        if latency.stamp is not None:
            estimate = fade(estimate, now - latency.stamp, self._decay)
        return estimate * (latency.active + 1)

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        ramp = self._ramp
        if now >= ramp.due:
            ramp.refresh(now)
        i, j = pair(rng, self._endpoints, exclude)
        weights = ramp.weights
        # cost/weight compared cross-multiplied; on a tie the first sample wins.
        if self.cost(j, now) * weights[i] < self.cost(i, now) * weights[j]:
            i = j
        return self._endpoints[i]

    def in_flight(self, instance: str) -> int | None:
        load = self._by_instance.get(instance)
        return 0 if load is None else load.active

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        self._by_instance[endpoint.instance].active += 1

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        latency = self._by_instance[endpoint.instance]
        latency.active -= 1
        if not ok:
            # A failure never makes an endpoint look faster: one that fails fast would
            # otherwise draw ever more traffic.
            rtt = max(rtt, latency.estimate)
        if latency.stamp is None:
            latency.estimate = rtt  # the first sample replaces the default outright
        else:
            latency.estimate = observe(latency.estimate, now - latency.stamp, rtt, self._decay)
        latency.stamp = now
