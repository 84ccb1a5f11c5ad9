"""mesh.resilience.outcome: what an attempt came to, and its shared instances."""

from __future__ import annotations

import pytest

from mesh.resilience import outcome as o
from mesh.resilience.outcome import Kind, Outcome

RESET_UNSENT = o.Outcome(o.Kind.RESET)  # closed before a byte of the request was written


@pytest.mark.parametrize(
    ("value", "kind", "status", "sent"),
    [
        (o.CONNECT_FAILURE, Kind.CONNECT_FAILURE, 0, False),
        (o.REFUSED, Kind.REFUSED, 0, False),
        (o.RESET, Kind.RESET, 0, True),
        (RESET_UNSENT, Kind.RESET, 0, False),
        (o.TIMEOUT, Kind.TIMEOUT, 0, True),
        (o.response(200), Kind.RESPONSE, 200, True),
        (o.response(503), Kind.RESPONSE, 503, True),
        (o.response(999), Kind.RESPONSE, 999, True),
    ],
)
def test_constants(value: Outcome, kind: Kind, status: int, sent: bool) -> None:
    assert (value.kind, value.status, value.sent) == (kind, status, sent)


@pytest.mark.parametrize("status", [100, 200, 404, 503, 599])
def test_usual_responses_are_shared(status: int) -> None:
    assert o.response(status) is o.response(status)


def test_unusual_response_is_built() -> None:
    assert o.response(799) == Outcome(Kind.RESPONSE, 799, True)


@pytest.mark.parametrize(
    ("kind", "status", "sent"),
    [
        (Kind.RESPONSE, 0, True),  # a response has a status
        (Kind.RESPONSE, 99, True),
        (Kind.RESPONSE, 1000, True),
        (Kind.RESPONSE, 200, False),  # nothing answers an unsent request
        (Kind.RESET, 502, True),  # no response, no status
        (Kind.TIMEOUT, 504, True),
        (Kind.CONNECT_FAILURE, 0, True),  # no connection: nothing was sent
        (Kind.REFUSED, 0, True),
    ],
)
def test_impossible_outcomes(kind: Kind, status: int, sent: bool) -> None:
    with pytest.raises(ValueError, match=r"status|sent"):
        Outcome(kind, status, sent)


def test_hard_kinds() -> None:
    assert {Kind.REFUSED, Kind.RESET} == o.HARD
