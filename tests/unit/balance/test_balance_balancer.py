"""mesh.balance.balancer: the factory, and what every algorithm promises alike."""

from __future__ import annotations

from random import Random

import pytest
from balance_factories import ALGORITHMS, balancer, endpoint, endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.balancer import make_balancer
from mesh.balance.config import Algorithm, BalanceConfig
from mesh.balance.consistent_hash import ConsistentHash
from mesh.balance.keys import HashSource
from mesh.balance.least_request import LeastRequest
from mesh.balance.least_response_time import LeastResponseTime
from mesh.balance.round_robin import RoundRobin
from mesh.balance.weighted_random import WeightedRandom


def test_defaults_are_the_documented_ones() -> None:
    config = BalanceConfig()
    assert (config.algorithm, config.panic_threshold) == ("least_request", 0.5)
    assert (config.ewma_decay, config.default_rtt) == (10.0, 0.030)
    assert (config.zone, config.slow_start_window) == ("", 0.0)  # both off
    assert config.hash_on == HashSource("client_address")


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("random", WeightedRandom),
        ("round_robin", RoundRobin),
        ("least_request", LeastRequest),
        ("least_response_time", LeastResponseTime),
        ("consistent_hash", ConsistentHash),
    ],
)
def test_make_balancer(algorithm: Algorithm, kind: type) -> None:
    assert type(make_balancer(BalanceConfig(algorithm=algorithm))) is kind


def test_make_balancer_passes_the_ewma_knobs() -> None:
    b = make_balancer(BalanceConfig(algorithm="least_response_time", default_rtt=0.5))
    assert isinstance(b, LeastResponseTime)
    b.update([endpoint()])
    assert b.cost(0, 0.0) == 0.5


def replay(algorithm: Algorithm, seed: int) -> list[str]:
    """Picks with start/end hooks and an update midway, all driven by one seed."""
    b = balancer(algorithm, endpoints(3, 1, 2, 1), slow_start_window=10.0)
    rng, picked = Random(seed), []
    for step in range(300):
        if step == 150:
            b.update([*endpoints(3, 1, 2), endpoint("new", 2, since=14.0)])
        now = step * 0.1
        chosen = b.pick(rng, now, str(step % 17).encode(), exclude={f"i{step % 5}"})
        b.on_start(chosen, now)
        if step % 3:
            b.on_end(chosen, now + 0.01, 0.005 * (step % 7), step % 11 != 0)
        picked.append(chosen.instance)
    return picked


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_same_seed_gives_the_same_picks(algorithm: Algorithm) -> None:
    assert replay(algorithm, 7) == replay(algorithm, 7)
    assert len(set(replay(algorithm, 7))) > 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_single_endpoint_is_always_picked(algorithm: Algorithm) -> None:
    b = balancer(algorithm, [endpoint("only", 5)])
    rng = Random(0)
    picks = {b.pick(rng, 0.0, b"k", exclude={"only"}).instance for _ in range(20)}
    assert picks == {"only"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    excluded=st.sets(st.integers(0, 5)),
    seed=st.integers(0, 2**32),
    key=st.none() | st.binary(min_size=1, max_size=8),
)
def test_exclusion_sends_a_retry_elsewhere_unless_everything_was_tried(
    algorithm: Algorithm, weights: list[int], excluded: set[int], seed: int, key: bytes | None
) -> None:
    members = endpoints(*weights)
    exclude = {f"i{k}" for k in excluded}
    b = balancer(algorithm, members)
    picked = b.pick(Random(seed), 0.0, key, exclude)
    assert picked in members
    everything_tried = all(m.instance in exclude for m in members)
    assert everything_tried or picked.instance not in exclude


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_update_changes_the_set_picked_from(algorithm: Algorithm) -> None:
    b = balancer(algorithm, endpoints(1, 1))
    b.update([endpoint("x"), endpoint("y")])
    rng = Random(0)
    seen = {b.pick(rng, 0.0, str(k).encode()).instance for k in range(200)}
    assert seen == {"x", "y"}
