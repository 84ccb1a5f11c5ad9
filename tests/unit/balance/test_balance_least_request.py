"""mesh.balance.least_request: power of two choices on weight / (active + 1)."""

from __future__ import annotations

from fractions import Fraction
from random import Random

import pytest
from balance_factories import counts, endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.least_request import LeastRequest
from mesh.balance.p2c import two


def loaded(weights: list[int], active: list[int]) -> LeastRequest:
    b = LeastRequest()
    members = endpoints(*weights)
    b.update(members)
    for member, count in zip(members, active, strict=False):
        for _ in range(count):
            b.on_start(member, 0.0)
    return b


@given(
    data=st.lists(st.tuples(st.integers(1, 10), st.integers(0, 20)), min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
)
def test_never_the_worse_of_its_two_samples(data: list[tuple[int, int]], seed: int) -> None:
    weights, active = [w for w, _ in data], [a for _, a in data]
    b = loaded(weights, active)
    rng = Random(seed)
    first, second = two(Random(seed), len(data))  # the samples the pick will draw
    picked = int(b.pick(rng, 0.0).instance[1:])
    assert picked in (first, second)
    score = [Fraction(w, a + 1) for w, a in data]
    assert score[picked] == max(score[first], score[second])


def test_one_endpoint_is_always_picked_however_loaded() -> None:
    b = loaded([1], [1000])
    assert counts(b, 100) == {"i0": 100}


def test_a_hugely_loaded_endpoint_is_not_picked() -> None:
    b = loaded([1, 1, 1, 1, 1], [1000, 1, 2, 1, 0])
    seen = counts(b, 10_000)
    assert seen["i0"] == 0
    assert seen["i4"] > seen["i1"] > 0


def test_equal_loads_prefer_the_heavier_weight() -> None:
    assert counts(loaded([1, 3], [0, 0]), 100) == {"i1": 100}
    # 3/(3+1) < 1/(0+1): the lighter one wins once the heavier one is busier.
    assert counts(loaded([1, 3], [0, 3]), 100) == {"i0": 100}


@pytest.mark.parametrize(("starts", "ends", "expected"), [(3, 0, 3), (3, 2, 1), (1, 1, 0)])
def test_in_flight_accounting(starts: int, ends: int, expected: int) -> None:
    b = LeastRequest()
    member, other = endpoints(1, 1)
    b.update([member, other])
    for _ in range(starts):
        b.on_start(member, 0.0)
    for _ in range(ends):
        b.on_end(member, 1.0, 0.01, True)
    # `member` is picked over the idle `other` exactly when its load is zero too.
    picked = {b.pick(Random(s), 0.0).instance for s in range(20)}
    assert picked == ({"i1"} if expected else {"i0", "i1"})


def test_loads_survive_updates_and_departures() -> None:
    b = LeastRequest()
    a, c = endpoints(1, 1)
    b.update([a, c])
    b.on_start(a, 0.0)
    b.update([c])  # a leaves with a request in flight ...
    b.update([a, c])  # ... and comes back before it ends: still busy
    assert counts(b, 50) == {"i1": 50}
    b.on_end(a, 1.0, 0.01, True)
    assert set(counts(b, 50)) == {"i0", "i1"}
