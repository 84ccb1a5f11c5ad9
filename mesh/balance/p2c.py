"""Power of two choices: two distinct endpoints at random, and in-flight counts to compare them."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from random import Random
from typing import TypeVar

from mesh.balance.endpoint import Endpoint, allowed


class Load:
    """Requests in flight to one endpoint, counted by on_start and on_end."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0


L = TypeVar("L", bound=Load)


def carry(loads: dict[str, L], endpoints: Sequence[Endpoint], new: Callable[[], L]) -> dict[str, L]:
    """Loads of `endpoints` by instance id, kept from `loads` where known.

    An instance that left keeps its load while requests to it are in flight, so their
    ends are counted against it, not against a fresh load if it comes back meanwhile.
    """
    kept = {e.instance: loads.get(e.instance) or new() for e in endpoints}
    for instance, load in loads.items():
        if load.active and instance not in kept:
            kept[instance] = load
    return kept


def two(rng: Random, count: int) -> tuple[int, int]:
    """Two distinct indexes below `count`, uniformly (the same one twice when count is 1)."""
    if count < 2:
        return 0, 0
    first = int(rng.random() * count)
    second = int(rng.random() * (count - 1))
    return first, second + (second >= first)


def pair(rng: Random, endpoints: Sequence[Endpoint], exclude: Set[str]) -> tuple[int, int]:
    """Two distinct indexes of `endpoints`, outside `exclude` unless that leaves none."""
    if not exclude:
        return two(rng, len(endpoints))
    kept = allowed(endpoints, exclude)
    first, second = two(rng, len(kept))
    return kept[first], kept[second]
