"""Token buckets: burst, refill, independence of keys, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.resilience.ratelimit import TokenBuckets


def test_a_burst_then_the_steady_rate() -> None:
    buckets = TokenBuckets(rate=10, burst=5)
    assert [buckets.allow(b"a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.retry_after(b"a", 0.0) == pytest.approx(0.1)
    assert not buckets.allow(b"a", 0.05)
    assert buckets.allow(b"a", 0.1)
    assert buckets.allow(b"a", 10.0)  # refilled, but never above the burst
    assert sum(buckets.allow(b"a", 10.0) for _ in range(10)) == 4


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.allow(b"a", 0.0)
    assert not buckets.allow(b"a", 0.0)
    assert buckets.allow(b"b", 0.0)


def test_the_number_of_keys_is_bounded() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_keys=100)
    for i in range(1000):
        buckets.allow(str(i).encode(), 0.0)
    assert len(buckets) == 100


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_nonsense_limits_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        TokenBuckets(rate, burst)


@given(
    rate=st.floats(0.5, 1000),
    burst=st.integers(1, 100),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    buckets = TokenBuckets(rate, burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += buckets.allow(b"k", now)
    assert allowed <= burst + rate * now + 1e-9
