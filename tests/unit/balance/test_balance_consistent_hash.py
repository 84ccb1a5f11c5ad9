"""mesh.balance.consistent_hash: stable keys, ~1/N remapping on a join or leave, weights."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest
from balance_factories import counts, endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.consistent_hash import (
    MAX_POINTS,
    POINTS_PER_WEIGHT,
    ConsistentHash,
    point_counts,
)
from mesh.balance.endpoint import Endpoint

KEYS = [f"user-{k}".encode() for k in range(10_000)]


def ring(members: list[Endpoint]) -> ConsistentHash:
    b = ConsistentHash()
    b.update(members)
    return b


def owners(b: ConsistentHash, keys: list[bytes] = KEYS) -> list[str]:
    rng = Random(0)
    return [b.pick(rng, 0.0, key).instance for key in keys]


def moved(before: list[str], after: list[str]) -> float:
    return sum(a != b for a, b in zip(before, after, strict=True)) / len(before)


def test_removing_one_of_ten_moves_only_its_keys() -> None:
    members = endpoints(*[1] * 10)
    before = owners(ring(members))
    after = owners(ring(members[:4] + members[5:]))
    assert moved(before, after) == pytest.approx(0.10, abs=0.02)
    assert all(a == b for a, b in zip(before, after, strict=True) if a != "i4")


def test_adding_an_eleventh_moves_about_one_key_in_eleven() -> None:
    members = endpoints(*[1] * 11)
    before = owners(ring(members[:10]))
    after = owners(ring(members))
    assert moved(before, after) == pytest.approx(1 / 11, abs=0.02)
    assert all(a == b for a, b in zip(before, after, strict=True) if b != "i10")


def test_keys_spread_in_proportion_to_weights() -> None:
    seen = Counter(owners(ring(endpoints(1, 2, 1))))
    assert seen["i1"] / len(KEYS) == pytest.approx(0.5, abs=0.05)


@given(order=st.permutations(range(5)))
def test_the_owner_of_a_key_does_not_depend_on_the_endpoints_order(order: list[int]) -> None:
    members = endpoints(1, 2, 1, 3, 1)
    shuffled = ring([members[k] for k in order])
    assert owners(shuffled, KEYS[:200]) == owners(ring(members), KEYS[:200])


def test_the_same_key_always_goes_to_the_same_endpoint() -> None:
    b = ring(endpoints(1, 1, 1))
    assert len({b.pick(Random(seed), 0.0, b"user-7").instance for seed in range(50)}) == 1


def test_no_key_picks_at_random_in_proportion_to_weights() -> None:
    seen = counts(ring(endpoints(3, 1)), 40_000)
    assert seen["i0"] / seen["i1"] == pytest.approx(3, rel=0.1)


@given(key=st.binary(min_size=1), excluded=st.sets(st.integers(0, 3), max_size=3))
def test_a_retry_walks_on_to_the_next_allowed_endpoint(key: bytes, excluded: set[int]) -> None:
    b = ring(endpoints(1, 1, 1, 1))
    exclude = {f"i{k}" for k in excluded}
    picked = b.pick(Random(0), 0.0, key, exclude).instance
    assert picked not in exclude
    assert b.pick(Random(1), 0.0, key, exclude).instance == picked  # still deterministic


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1, 1], [POINTS_PER_WEIGHT] * 2),
        ([3, 1], [3 * POINTS_PER_WEIGHT, POINTS_PER_WEIGHT]),
        ([256, 256], [MAX_POINTS // 2] * 2),  # exactly the budget
        ([512, 512], [MAX_POINTS // 2] * 2),  # scaled down
        ([10_000, 10_000, 1], [32_766, 32_766, 3]),
        ([10_000] * 10 + [1], [6_553] * 10 + [1]),  # never below one point
    ],
)
def test_point_counts(weights: list[int], expected: list[int]) -> None:
    assert point_counts(weights) == expected


def test_an_endpoint_with_a_single_point_is_still_reachable() -> None:
    b = ring(endpoints(*[10_000] * 10, 1))
    assert b.pick(Random(0), 0.0, b"k", exclude={f"i{k}" for k in range(10)}).instance == "i10"
