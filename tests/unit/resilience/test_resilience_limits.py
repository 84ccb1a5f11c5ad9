"""mesh.resilience.limits: the concurrency limit, deadlines and per-try timeouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.resilience.limits import ConcurrencyLimit, remaining, try_timeout


def test_acquire_up_to_the_limit() -> None:
    limit = ConcurrencyLimit(3)
    assert [limit.try_acquire() for _ in range(4)] == [True, True, True, False]
    limit.release()
    assert [limit.try_acquire() for _ in range(2)] == [True, False]
    assert limit.active == 3


def test_a_stray_release_grants_nothing() -> None:
    limit = ConcurrencyLimit(1)
    limit.release()
    assert limit.active == 0
    assert [limit.try_acquire() for _ in range(2)] == [True, False]


def test_lowering_the_limit_keeps_requests_in_flight() -> None:
    limit = ConcurrencyLimit(4)
    for _ in range(4):
        limit.try_acquire()
    limit.limit = 2
    assert not limit.try_acquire()
    limit.release()
    limit.release()
    assert not limit.try_acquire()  # 2 in flight: still at the new limit
    limit.release()
    assert limit.try_acquire()


def test_limit_rejects_zero() -> None:
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyLimit(0)


@given(size=st.integers(1, 20), ops=st.lists(st.booleans(), max_size=200))
def test_never_over_the_limit(size: int, ops: list[bool]) -> None:
    limit, held = ConcurrencyLimit(size), 0
    for acquire in ops:
        if acquire:
            granted = limit.try_acquire()
            assert granted is (held < size)
            held += granted
        elif held:
            limit.release()
            held -= 1
        assert 0 <= limit.active == held <= size


@pytest.mark.parametrize(
    ("deadline", "now", "left"),
    [(15.0, 0.0, 15.0), (15.0, 14.5, 0.5), (15.0, 15.0, 0.0), (15.0, 20.0, 0.0)],
)
def test_remaining(deadline: float, now: float, left: float) -> None:
    assert remaining(deadline, now) == left


@pytest.mark.parametrize(
    ("per_try", "deadline", "now", "timeout"),
    [
        (None, 15.0, 0.0, 15.0),  # no per-try timeout: the whole deadline
        (2.0, 15.0, 0.0, 2.0),
        (2.0, 15.0, 14.0, 1.0),  # never past the deadline
        (2.0, 15.0, 13.0, 2.0),
        (2.0, 15.0, 15.0, 0.0),  # no time left: no try
        (None, 15.0, 16.0, 0.0),
    ],
)
def test_try_timeout(per_try: float | None, deadline: float, now: float, timeout: float) -> None:
    assert try_timeout(per_try, deadline, now) == timeout
