"""mesh.balance.round_robin: plain turns, and nginx's smooth weighted round robin."""

from __future__ import annotations

import itertools
from collections import Counter
from random import Random

import pytest
from balance_factories import balancer, endpoints, sequence
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.round_robin import PLAN_BUDGET, plan, units


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1], [0]),
        ([2, 2, 2], [0, 1, 2]),  # equal weights: plain turns
        ([5, 1], [0, 0, 0, 1, 0, 0]),
        ([1, 5], [1, 1, 0, 1, 1, 1]),
        ([3, 2, 1], [0, 1, 0, 2, 1, 0]),
        ([4, 2], [0, 1, 0]),  # in lowest terms
    ],
)
def test_plan(weights: list[float], expected: list[int]) -> None:
    assert list(plan(weights)) == expected


@pytest.mark.parametrize(
    ("weights", "cap", "expected"),
    [
        ([5, 1], 100, [5, 1]),
        ([6, 4, 2], 100, [3, 2, 1]),
        ([300, 100], 100, [3, 1]),
        ([10_000, 1], 100, [100, 1]),  # scaled down; never to zero
        ([2.5, 0.5], 60, [5, 1]),  # fractional (slow start) weights: scaled to the cap
        ([0.5, 1.0], 100, [33, 67]),
        ([1, 1, 1], 2, [1, 1, 1]),
    ],
)
def test_units(weights: list[float], cap: int, expected: list[int]) -> None:
    assert units(weights, cap) == expected


def test_the_plan_stays_within_its_budget() -> None:
    weights = [10_000, 9_999, 7, 1, 5_000, 3, 2, 1, 1, 8_000]
    assert len(plan(weights)) <= PLAN_BUDGET // len(weights) + len(weights)


def test_five_to_one_within_two_percent_and_the_lone_one_every_sixth_pick() -> None:
    picks = sequence(balancer("round_robin", endpoints(5, 1)), 60_000)
    seen = Counter(picks)
    assert seen["i0"] / seen["i1"] == pytest.approx(5, rel=0.02)
    lone = [at for at, instance in enumerate(picks) if instance == "i1"]
    assert {b - a for a, b in itertools.pairwise(lone)} == {6}


@given(weights=st.lists(st.integers(1, 20), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_picks_are_smooth(weights: list[int], seed: int) -> None:
    """Each endpoint stays within two picks of its exact share at every point, not in runs."""
    total = sum(weights)
    picks = sequence(balancer("round_robin", endpoints(*weights)), 2 * total, seed=seed)
    seen = Counter[str]()
    for done, instance in enumerate(picks, start=1):
        seen[instance] += 1
        for k, weight in enumerate(weights):
            assert abs(seen[f"i{k}"] - done * weight / total) < 2
    assert all(seen[f"i{k}"] == 2 * w for k, w in enumerate(weights))


def test_equal_weights_take_turns_from_a_random_start() -> None:
    b = balancer("round_robin", endpoints(1, 1, 1))
    picks = sequence(b, 7, seed=4)
    start = int(picks[0][1:])
    assert picks == [f"i{(start + k) % 3}" for k in range(7)]
    starts = {
        sequence(balancer("round_robin", endpoints(1, 1, 1)), 1, seed=s)[0] for s in range(30)
    }
    assert starts == {"i0", "i1", "i2"}


def test_exclusion_skips_to_the_next_allowed_in_the_order() -> None:
    b = balancer("round_robin", endpoints(1, 1, 1, 1))
    rng = Random(0)
    first = b.pick(rng, 0.0)
    nxt = b.pick(rng, 0.0, exclude={f"i{(int(first.instance[1:]) + 1) % 4}"})
    assert int(nxt.instance[1:]) == (int(first.instance[1:]) + 2) % 4


def test_the_turn_survives_an_update() -> None:
    b = balancer("round_robin", endpoints(1, 1, 1))
    rng = Random(0)
    before = int(b.pick(rng, 0.0).instance[1:])
    b.update(endpoints(1, 1, 1, 1))
    assert b.pick(rng, 0.0).instance == f"i{before + 1}"
