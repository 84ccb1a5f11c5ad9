"""mesh.balance.slow_start: the ramp of a new endpoint's weight, as tables."""

from __future__ import annotations

import math
from random import Random

import pytest
from balance_factories import balancer, counts, endpoint
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.config import Algorithm
from mesh.balance.slow_start import MIN_FACTOR, STEPS, Ramp, factor


@pytest.mark.parametrize(
    ("since", "now", "window", "aggression", "expected"),
    [
        (0.0, 100.0, 0.0, 1.0, 1.0),  # no window: full weight
        (100.0, 100.0, 0.0, 1.0, 1.0),
        (0.0, 0.0, 30.0, 1.0, MIN_FACTOR),  # just routable: the floor
        (0.0, 1.5, 30.0, 1.0, MIN_FACTOR),  # 5% of the way: still the floor
        (0.0, 6.0, 30.0, 1.0, 0.2),
        (0.0, 15.0, 30.0, 1.0, 0.5),
        (10.0, 34.0, 30.0, 1.0, 0.8),
        (0.0, 30.0, 30.0, 1.0, 1.0),  # window over
        (0.0, 1000.0, 30.0, 1.0, 1.0),
        (0.0, 7.5, 30.0, 2.0, 0.5),  # aggression 2: square root, a faster start
        (0.0, 15.0, 30.0, 0.5, 0.25),  # aggression 0.5: square, a slower start
        (50.0, 40.0, 30.0, 1.0, MIN_FACTOR),  # `since` ahead of `now`: the floor
    ],
)
def test_factor(
    since: float, now: float, window: float, aggression: float, expected: float
) -> None:
    assert factor(since, now, window, aggression) == pytest.approx(expected)


@given(
    since=st.floats(0, 1000),
    steps=st.lists(st.floats(0, 100), min_size=2, max_size=10),
    window=st.floats(0.001, 600),
    aggression=st.floats(0.1, 10),
)
def test_factor_grows_from_the_floor_to_one(
    since: float, steps: list[float], window: float, aggression: float
) -> None:
    values = [factor(since, since + s, window, aggression) for s in sorted(steps)]
    assert all(MIN_FACTOR <= v <= 1.0 for v in values)
    assert values == sorted(values)


def test_ramp_steps_weights_up_then_stops() -> None:
    ramp = Ramp(window=20.0)
    ramp.reset([endpoint("old", 4), endpoint("new", 4, since=100.0)])
    assert ramp.due == -math.inf  # the first pick computes the ramp
    ramp.refresh(110.0)
    assert ramp.weights == [4.0, 2.0]
    assert ramp.due == 110.0 + 20.0 / STEPS
    ramp.refresh(120.0)
    assert (ramp.weights, ramp.due) == ([4.0, 4.0], math.inf)


def test_ramp_without_a_window_never_refreshes() -> None:
    ramp = Ramp()
    ramp.reset([endpoint("a", 3, since=100.0)])
    assert (ramp.weights, ramp.due) == ([3.0], math.inf)


@pytest.mark.parametrize("algorithm", ["random", "round_robin"])
def test_a_new_endpoint_gets_a_small_share_then_its_full_share(algorithm: Algorithm) -> None:
    members = [endpoint("old"), endpoint("new", since=1000.0)]
    b = balancer(algorithm, members, slow_start_window=60.0)
    early = counts(b, 11_000, now=1000.0)
    assert early["new"] == pytest.approx(1_000, rel=0.1)  # 10%: 1 to 10
    late = counts(b, 10_000, now=1060.0)
    assert late["new"] == pytest.approx(5_000, rel=0.05)


@pytest.mark.parametrize(("now", "picked"), [(1000.0, "old"), (1012.0, "old"), (1030.0, "new")])
def test_least_request_weighs_in_flight_requests_by_the_ramped_weight(
    now: float, picked: str
) -> None:
    old, new = endpoint("old"), endpoint("new", since=1000.0)
    b = balancer("least_request", [old, new], slow_start_window=60.0)
    for _ in range(3):
        b.on_start(old, now)
    # old scores 1/(3+1); new 0.1 at first, 0.2 after 12 s, 0.5 half way.
    assert {b.pick(Random(seed), now).instance for seed in range(20)} == {picked}
