"""Consistent hash: a ring of virtual nodes, so a join or a leave moves only about 1/N of keys."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence, Set
from hashlib import blake2b
from random import Random

from mesh.balance.endpoint import Endpoint, allowed

# Points on the ring per unit of weight: the spread of keys over endpoints evens out as
# the square root of this (about ±9% at 128).
POINTS_PER_WEIGHT = 128
# Bounds the ring's memory and build time; past it every endpoint's count is scaled
# down. Counts are prefixes (point k of an instance never changes), so scaling still
# moves only the keys on the points that went.
MAX_POINTS = 1 << 16


def point_counts(weights: Sequence[int]) -> list[int]:
    """Points on the ring of each endpoint: in proportion to its weight, at least one."""
    counts = [w * POINTS_PER_WEIGHT for w in weights]
    total = sum(counts)
    if total > MAX_POINTS:
        counts = [max(1, c * MAX_POINTS // total) for c in counts]
    return counts


def point(data: bytes) -> int:
    """A stable 64-bit position on the ring (the same in every process, unlike hash())."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


class ConsistentHash:
    """Ring hash (Envoy's ring_hash, ketama): a bisect on the sorted points, O(log n) per pick."""

    __slots__ = ("_endpoints", "_owners", "_points")

    def __init__(self) -> None:
        self._endpoints: tuple[Endpoint, ...] = ()
        self._points: list[int] = []  # sorted
        self._owners: list[int] = []  # endpoint index of each point

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        endpoints = tuple(endpoints)
        if endpoints == self._endpoints:
            return  # building the ring takes milliseconds: skip it when nothing changed
        self._endpoints = endpoints
        counts = point_counts([e.weight for e in endpoints])
        ring = sorted(
            (point(f"{e.instance}#{k}".encode()), index)
            for index, (e, count) in enumerate(zip(endpoints, counts, strict=True))
            for k in range(count)
        )
        self._points = [p for p, _ in ring]
        self._owners = [owner for _, owner in ring]

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        points = self._points
        if key is None:
            # No key: a random point, so still in proportion to the weights.
            at = int(rng.random() * len(points))
        else:
            at = bisect_left(points, point(key)) % len(points)
        if exclude:
            # Retries walk on clockwise, as every proxy would for the same key.
            kept = set(allowed(self._endpoints, exclude))
            while self._owners[at] not in kept:
                at = (at + 1) % len(points)
        return self._endpoints[self._owners[at]]

    def in_flight(self, instance: str) -> int | None:
        return None  # picks do not depend on load: it is not counted

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        """The ring keeps no state per request."""

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        """The ring keeps no state per request."""
