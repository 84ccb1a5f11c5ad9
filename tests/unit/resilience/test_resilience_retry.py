"""mesh.resilience.retry: conditions, retry count and idempotency, as tables and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.resilience import outcome as o
from mesh.resilience.outcome import Outcome
from mesh.resilience.retry import IDEMPOTENT, Condition, RetryPolicy, decide

RESET_UNSENT = o.Outcome(o.Kind.RESET)  # closed before a byte of the request was written

DEFAULT = RetryPolicy()
NO_ANSWER = [o.CONNECT_FAILURE, o.REFUSED, o.RESET, RESET_UNSENT, o.TIMEOUT]
OUTCOMES = [*NO_ANSWER, *(o.response(s) for s in (200, 404, 429, 500, 502, 503, 504, 599))]


def policy(*on: Condition, attempts: int = 2) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, on=frozenset(on))


@pytest.mark.parametrize(
    ("outcome", "method", "retries_done", "expected"),
    [
        (o.CONNECT_FAILURE, "GET", 0, True),
        (o.CONNECT_FAILURE, "GET", 1, True),
        (o.CONNECT_FAILURE, "GET", 2, False),  # attempts=2: the third retry is never made
        (o.REFUSED, "GET", 0, True),
        (o.REFUSED, "POST", 0, True),  # refused: the request never left
        (o.CONNECT_FAILURE, "PATCH", 0, True),
        (o.response(503), "GET", 0, True),
        (o.response(503), "PUT", 1, True),
        (o.response(503), "POST", 0, False),  # the upstream saw it
        (o.response(502), "GET", 0, False),  # not in the default conditions
        (o.response(500), "GET", 0, False),
        (o.response(200), "GET", 0, False),
        (o.RESET, "GET", 0, True),  # reset is a default: the instance died mid-request
        (o.TIMEOUT, "GET", 0, True),  # reset covers every attempt that got no answer
        (o.RESET, "POST", 0, False),  # but a request that may have reached it, never
        (RESET_UNSENT, "POST", 0, True),
    ],
)
def test_default_policy(outcome: Outcome, method: str, retries_done: int, expected: bool) -> None:
    assert decide(DEFAULT, outcome, retries_done, method) is expected


# Which outcomes each condition retries, for an idempotent method.
COVERS: list[tuple[Condition, set[Outcome]]] = [
    ("connect-failure", {o.CONNECT_FAILURE, o.REFUSED}),
    ("refused", {o.REFUSED}),
    ("reset", set(NO_ANSWER)),
    ("timeout", {o.TIMEOUT}),
    ("5xx", {*NO_ANSWER, *(o.response(s) for s in (500, 502, 503, 504, 599))}),
    ("gateway-error", {*NO_ANSWER, *(o.response(s) for s in (502, 503, 504))}),
    (429, {o.response(429)}),
    (503, {o.response(503)}),
]


@pytest.mark.parametrize(("condition", "covered"), COVERS, ids=[str(c) for c, _ in COVERS])
def test_conditions(condition: Condition, covered: set[Outcome]) -> None:
    retried = {out for out in OUTCOMES if decide(policy(condition), out, 0, "GET")}
    assert retried == covered


def test_conditions_add_up() -> None:
    retried = {out for out in OUTCOMES if decide(policy("refused", 502, 504), out, 0, "GET")}
    assert retried == {o.REFUSED, o.response(502), o.response(504)}


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
@pytest.mark.parametrize("spelling", [str, str.encode])
def test_idempotent_methods_retry_after_reaching(method: str, spelling: Any) -> None:
    assert decide(policy("5xx"), o.response(503), 0, spelling(method))


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "PURGE", "get", b"POST", b"get"])
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (o.CONNECT_FAILURE, True),
        (o.REFUSED, True),
        (RESET_UNSENT, True),  # closed before a byte was written
        (o.RESET, False),
        (o.TIMEOUT, False),
        (o.response(503), False),
    ],
)
def test_other_methods_retry_only_unsent(
    method: str | bytes, outcome: Outcome, expected: bool
) -> None:
    assert decide(policy("5xx"), outcome, 0, method) is expected


@pytest.mark.parametrize(("attempts", "tries"), [(0, 1), (1, 2), (2, 3), (5, 6)])
def test_attempts_count_retries_after_the_first_try(attempts: int, tries: int) -> None:
    made = 1
    while decide(policy("refused", attempts=attempts), o.REFUSED, made - 1, "GET"):
        made += 1
    assert made == tries


@pytest.mark.parametrize(
    "fields",
    [
        {"attempts": -1},
        {"per_try_timeout": 0.0},
        {"backoff_base": 0.0},
        {"backoff_base": 0.3, "backoff_cap": 0.2},
        {"on": frozenset({"4xx"})},
        {"on": frozenset({99})},
        {"on": frozenset({600})},
        {"on": frozenset({True})},
    ],
)
def test_policy_rejects(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"attempts|per_try|backoff|on"):
        RetryPolicy(**fields)


def test_default_policy_fields() -> None:
    assert DEFAULT.attempts == 2
    assert DEFAULT.on == {"connect-failure", "refused", "reset", 503}

    assert (DEFAULT.per_try_timeout, DEFAULT.backoff_base, DEFAULT.backoff_cap) == (
        None,
        0.025,
        0.25,
    )


CONDITIONS: list[Condition] = [
    "connect-failure",
    "refused",
    "reset",
    "timeout",
    "5xx",
    "gateway-error",
    500,
    502,
    503,
    504,
]
METHODS = [*sorted(m for m in IDEMPOTENT if isinstance(m, str)), "POST", "PATCH", b"POST", "x"]


@given(
    on=st.frozensets(st.sampled_from(CONDITIONS)),
    attempts=st.integers(0, 5),
    outcome=st.sampled_from(OUTCOMES),
    retries_done=st.integers(0, 6),
    method=st.sampled_from(METHODS),
)
def test_never_retries_a_non_idempotent_request_that_reached_upstream(
    on: frozenset[Condition], attempts: int, outcome: Outcome, retries_done: int, method: Any
) -> None:
    retried = decide(RetryPolicy(attempts=attempts, on=on), outcome, retries_done, method)
    if retried:
        assert retries_done < attempts
        assert not outcome.sent or method in IDEMPOTENT
    if outcome.sent and method not in IDEMPOTENT:
        assert not retried
