"""mesh.balance.p2c: sampling two distinct endpoints, and loads kept across updates."""

from __future__ import annotations

from collections import Counter
from random import Random

from balance_factories import endpoints
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.p2c import Load, carry, pair, two


@given(seed=st.integers(0, 2**32), count=st.integers(1, 50))
def test_two_gives_distinct_indexes_in_range(seed: int, count: int) -> None:
    first, second = two(Random(seed), count)
    assert 0 <= first < count
    assert 0 <= second < count
    assert (first != second) == (count > 1)


def test_two_samples_every_ordered_pair_evenly() -> None:
    rng = Random(3)
    seen = Counter(two(rng, 4) for _ in range(12_000))
    assert len(seen) == 12  # 4 * 3 ordered pairs
    assert all(900 <= n <= 1100 for n in seen.values())


@given(
    seed=st.integers(0, 2**32),
    count=st.integers(1, 8),
    excluded=st.sets(st.integers(0, 7)),
)
def test_pair_avoids_excluded_endpoints_unless_all_are(
    seed: int, count: int, excluded: set[int]
) -> None:
    members = endpoints(*[1] * count)
    exclude = {f"i{k}" for k in excluded}
    left = {k for k in range(count) if f"i{k}" not in exclude} or set(range(count))
    first, second = pair(Random(seed), members, exclude)
    assert {first, second} <= left
    assert (first != second) == (len(left) > 1)


def load(active: int) -> Load:
    result = Load()
    result.active = active
    return result


def test_carry_keeps_loads_by_instance_and_busy_ones_that_left() -> None:
    a, b, c = load(2), load(0), load(1)
    before = {"i0": a, "i1": b, "gone-busy": c, "gone-idle": load(0)}
    after = carry(before, endpoints(1, 1, 1), Load)
    assert after["i0"] is a
    assert after["i1"] is b
    assert after["gone-busy"] is c
    assert after["i2"].active == 0
    assert set(after) == {"i0", "i1", "i2", "gone-busy"}
