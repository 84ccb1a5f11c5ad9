"""mesh.resilience.backoff: full jitter, as a table of ceilings and a property of bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.resilience.backoff import ceiling, delay


class Fixed(random.Random):
    """A Random whose random() is always `value`: uniform(a, b) = a + (b - a) * value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.025), (1, 0.05), (2, 0.1), (3, 0.2), (4, 0.25), (10, 0.25), (10_000, 0.25)],
)
def test_ceiling_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert ceiling(attempt, 0.025, 0.25) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "attempt", "expected"),
    [(0.0, 0, 0.0), (0.5, 0, 0.0125), (0.5, 2, 0.05), (0.999, 3, 0.1998), (0.5, 9, 0.125)],
)
def test_delay_is_uniform_below_the_ceiling(value: float, attempt: int, expected: float) -> None:
    assert delay(attempt, 0.025, 0.25, Fixed(value)) == pytest.approx(expected)


def test_delay_is_jittered() -> None:
    rng = random.Random(7)
    assert len({delay(3, 0.025, 0.25, rng) for _ in range(50)}) == 50


@given(
    attempt=st.integers(0, 100_000),
    base=st.floats(1e-6, 10.0),
    extra=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**32),
)
def test_delay_within_bounds(attempt: int, base: float, extra: float, seed: int) -> None:
    cap = base + extra
    wait = delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= wait <= min(cap, base * 2.0 ** min(attempt, 1000))
