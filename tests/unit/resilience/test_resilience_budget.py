"""mesh.resilience.budget: accounting tables, the floor, expiry, and a reference model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.resilience.budget import BudgetConfig, RetryBudget


def spend_all(budget: RetryBudget, now: float, limit: int = 10_000) -> int:
    """How many retries the budget grants at `now`, spending them."""
    granted = 0
    while granted < limit and budget.try_spend(now):
        granted += 1
    return granted


def with_requests(config: BudgetConfig, requests: int, now: float = 0.0) -> RetryBudget:
    budget = RetryBudget(config)
    for _ in range(requests):
        budget.record_request(now)
    return budget


@pytest.mark.parametrize(
    ("ratio", "min_per_second", "window", "requests", "granted"),
    [
        (0.2, 10.0, 10, 0, 100),  # with no traffic, the floor alone
        (0.2, 10.0, 10, 1000, 300),  # 200 from the ratio plus the floor's 100
        (0.2, 0.0, 10, 100, 20),
        (0.2, 0.0, 10, 4, 0),  # 0.8 of a retry is no retry
        (0.2, 0.0, 10, 5, 1),
        (0.5, 0.0, 10, 7, 3),
        (0.0, 1.0, 10, 1000, 10),  # ratio 0: the floor only
        (0.0, 0.0, 10, 1000, 0),  # retries off
        (1.0, 0.0, 1, 3, 3),
        (0.2, 0.5, 4, 0, 2),  # a fractional floor: 0.5/s over 4 s
    ],
)
def test_accounting(
    ratio: float, min_per_second: float, window: int, requests: int, granted: int
) -> None:
    budget = with_requests(BudgetConfig(ratio, min_per_second, window), requests)
    assert spend_all(budget, 0.0) == granted


def test_requests_after_spending_add_room() -> None:
    budget = with_requests(BudgetConfig(0.2, 0.0), 10)
    assert spend_all(budget, 0.5) == 2
    budget.record_request(0.6)
    assert spend_all(budget, 0.7) == 0  # 11 requests: 2.2 retries
    for _ in range(4):
        budget.record_request(0.8)
    assert spend_all(budget, 0.9) == 1  # 15 requests: 3 retries


@pytest.mark.parametrize(
    ("later", "granted"), [(3.95, 0), (4.0, 0), (12.99, 0), (13.0, 2), (100.0, 2), (1e9, 2)]
)
def test_spent_retries_leave_with_their_second(later: float, granted: int) -> None:
    budget = RetryBudget(BudgetConfig(0.0, 0.2, 10))  # a reserve of 2 retries
    assert spend_all(budget, 3.9) == 2  # counted in second 3, which leaves at 13.0
    assert spend_all(budget, later) == granted


@pytest.mark.parametrize(("later", "granted"), [(9.99, 2), (10.0, 0), (11.0, 0)])
def test_requests_leave_with_their_second(later: float, granted: int) -> None:
    budget = with_requests(BudgetConfig(0.2, 0.0, 10), 10, now=0.0)
    assert spend_all(budget, later) == granted


def test_floor_comes_back_after_a_window() -> None:
    budget = RetryBudget(BudgetConfig(0.2, 1.0, 5))
    assert spend_all(budget, 0.0) == 5
    assert spend_all(budget, 4.9) == 0
    assert spend_all(budget, 5.0) == 5


def test_partial_expiry() -> None:
    budget = RetryBudget(BudgetConfig(0.0, 1.0, 3))  # a reserve of 3 retries
    assert budget.try_spend(0.1)
    assert budget.try_spend(1.1)
    assert budget.try_spend(2.1)
    assert not budget.try_spend(2.9)
    assert budget.try_spend(3.0)  # second 0 left the window
    assert not budget.try_spend(3.5)
    assert budget.try_spend(4.0)


def test_an_earlier_now_counts_in_the_newest_bucket() -> None:
    budget = RetryBudget(BudgetConfig(0.0, 1.0, 2))
    assert budget.try_spend(5.0)
    assert budget.try_spend(1.0)  # the clock went back: counted at second 5
    assert not budget.try_spend(6.0)
    assert spend_all(budget, 7.0) == 2  # second 5 left: both came back together


@pytest.mark.parametrize("fields", [{"ratio": -0.1}, {"min_per_second": -1.0}, {"window": 0}])
def test_config_rejects(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"negative|window"):
        BudgetConfig(**fields)  # type: ignore[arg-type]


def test_defaults() -> None:
    assert BudgetConfig() == BudgetConfig(ratio=0.2, min_per_second=10.0, window=10)


# --- a reference model: every event kept, the window recomputed from scratch ----------

Op = tuple[float, bool]  # (time step, is a retry)


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    min_per_second=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    window=st.integers(1, 5),
    ops=st.lists(st.tuples(st.floats(0.0, 2.5), st.booleans()), max_size=150),
)
def test_matches_a_model_and_never_overspends(
    ratio: float, min_per_second: float, window: int, ops: list[Op]
) -> None:
    budget = RetryBudget(BudgetConfig(ratio, min_per_second, window))
    reserve = min_per_second * window
    events: list[tuple[int, bool]] = []  # (second, is a retry) of every counted event
    now = 0.0
    for step, is_retry in ops:
        now += step
        second = math.floor(now)
        live = [retry for at, retry in events if at > second - window]
        requests, retries = live.count(False), live.count(True)
        if not is_retry:
            budget.record_request(now)
            events.append((second, False))
            continue
        allowed = retries + 1 <= ratio * requests + reserve
        assert budget.try_spend(now) is allowed
        if allowed:
            events.append((second, True))
            # The property: within the window, retries never exceed their allowance.
            assert retries + 1 <= ratio * requests + reserve
