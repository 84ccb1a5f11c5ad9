"""mesh.balance.weighted_random: picks in proportion to the weights."""

from __future__ import annotations

from random import Random

import pytest
from balance_factories import balancer, counts, endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.weighted_random import WeightedRandom


@pytest.mark.parametrize("seed", range(10))
def test_five_to_one(seed: int) -> None:
    seen = counts(balancer("random", endpoints(5, 1)), 60_000, seed=seed)
    # Binomial noise: the ratio's standard deviation is 1.1% at 60 000 picks.
    assert seen["i0"] / seen["i1"] == pytest.approx(5, rel=0.04)


def test_equal_weights_spread_evenly() -> None:
    seen = counts(balancer("random", endpoints(1, 1, 1, 1)), 40_000)
    assert all(seen[f"i{k}"] == pytest.approx(10_000, rel=0.03) for k in range(4))


def test_exclusion_keeps_the_proportions_of_the_rest() -> None:
    b = balancer("random", endpoints(3, 1, 100))
    rng = Random(5)
    seen = [b.pick(rng, 0.0, exclude={"i2"}).instance for _ in range(40_000)]
    assert seen.count("i0") / seen.count("i1") == pytest.approx(3, rel=0.05)


@given(seed=st.integers(0, 2**32), weights=st.lists(st.integers(1, 10_000), min_size=1))
def test_a_draw_at_the_top_of_the_range_stays_in_range(seed: int, weights: list[int]) -> None:
    class Top(Random):
        def random(self) -> float:
            return 1.0 - 2.0**-53

    b = WeightedRandom()
    b.update(endpoints(*weights))
    assert b.pick(Top(seed), 0.0).instance == f"i{len(weights) - 1}"
