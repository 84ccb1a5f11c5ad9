"""mesh.balance.least_response_time: peak-EWMA maths as tables, and P2C on its cost."""

from __future__ import annotations

import math
from random import Random

import pytest
from balance_factories import counts, endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.least_response_time import LeastResponseTime, fade, observe
from mesh.balance.p2c import two

E1 = math.exp(-1.0)


@pytest.mark.parametrize(
    ("estimate", "elapsed", "rtt", "expected"),
    [
        (0.030, 1.0, 0.100, 0.100),  # a peak replaces the estimate at once
        (0.030, 0.0, 0.100, 0.100),
        (0.050, 3.0, 0.050, 0.050),
        (0.100, 0.0, 0.010, 0.100),  # no time since the last one: no weight
        (0.100, 10.0, 0.000, 0.100 * E1),  # one time constant
        (0.100, 10.0, 0.010, 0.100 * E1 + 0.010 * (1 - E1)),
        (0.100, 10.0 * math.log(2), 0.020, 0.060),  # half-life: half way
        (0.100, 1e9, 0.020, 0.020),  # long ago: the new sample alone
        (0.100, -5.0, 0.020, 0.100),  # a clock step back counts as no time
    ],
)
def test_observe(estimate: float, elapsed: float, rtt: float, expected: float) -> None:
    assert observe(estimate, elapsed, rtt, decay=10.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("elapsed", "expected"), [(0.0, 0.2), (10.0, 0.2 * E1), (20.0, 0.2 * E1 * E1), (-1.0, 0.2)]
)
def test_fade(elapsed: float, expected: float) -> None:
    assert fade(0.2, elapsed, decay=10.0) == pytest.approx(expected, rel=1e-12)


def test_cost_follows_samples_in_flight_requests_and_time() -> None:
    b = LeastResponseTime(None, decay=10.0, default_rtt=0.030)
    (member,) = endpoints(1)
    b.update([member])
    assert b.cost(0, 0.0) == pytest.approx(0.030)  # no sample: the default
    b.on_start(member, 0.0)
    b.on_start(member, 0.0)
    assert b.cost(0, 0.0) == pytest.approx(0.090)  # x (2 + 1)
    b.on_end(member, 100.0, 0.010, True)  # the first sample replaces the default
    assert b.cost(0, 100.0) == pytest.approx(0.010 * 2)
    b.on_end(member, 101.0, 0.200, True)  # a peak replaces it
    assert b.cost(0, 101.0) == pytest.approx(0.200)
    b.on_start(member, 101.0)
    b.on_end(member, 111.0, 0.100, True)  # lower, one decay later: blends in
    blended = 0.200 * E1 + 0.100 * (1 - E1)
    assert b.cost(0, 111.0) == pytest.approx(blended)
    assert b.cost(0, 121.0) == pytest.approx(blended * E1)  # no news: it fades


@pytest.mark.parametrize(("rtt", "expected"), [(0.001, 0.100), (0.500, 0.500)])
def test_a_failure_never_lowers_the_estimate(rtt: float, expected: float) -> None:
    b = LeastResponseTime(None, decay=10.0, default_rtt=0.030)
    (member,) = endpoints(1)
    b.update([member])
    b.on_start(member, 0.0)
    b.on_end(member, 0.0, 0.100, True)
    b.on_start(member, 0.0)
    b.on_end(member, 10.0, rtt, False)
    assert b.cost(0, 10.0) == pytest.approx(expected)


def sampled(rtts: list[float], now: float = 0.0) -> LeastResponseTime:
    b = LeastResponseTime(None, decay=10.0, default_rtt=0.030)
    members = endpoints(*[1] * len(rtts))
    b.update(members)
    for member, rtt in zip(members, rtts, strict=True):
        b.on_start(member, now)
        b.on_end(member, now, rtt, True)
    return b


@given(
    rtts=st.lists(st.floats(0.001, 5.0), min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
    later=st.floats(0, 100),
)
def test_never_the_worse_of_its_two_samples(rtts: list[float], seed: int, later: float) -> None:
    b = sampled(rtts)
    first, second = two(Random(seed), len(rtts))
    picked = int(b.pick(Random(seed), later).instance[1:])
    assert picked in (first, second)
    assert b.cost(picked, later) == min(b.cost(first, later), b.cost(second, later))


def test_a_slow_endpoint_is_avoided_then_tried_again_once_its_peak_fades() -> None:
    b = sampled([0.010, 0.010, 2.0])
    assert counts(b, 1_000, now=0.0)["i2"] == 0
    fast = endpoints(1, 1)
    for member in fast:  # the fast ones keep answering in 10 ms ...
        b.on_start(member, 60.0)
        b.on_end(member, 60.0, 0.010, True)
    # ... while the slow one's 2 s, unrefreshed for 60 s, has faded to 5 ms.
    assert counts(b, 1_000, now=60.0)["i2"] > 0
