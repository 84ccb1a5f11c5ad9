"""mesh.balance.endpoint: endpoints from view members, and exclusion for retries."""

from __future__ import annotations

import pytest
from balance_factories import endpoints

from mesh.balance.endpoint import Endpoint, allowed, of
from mesh.membership.view import Member, State
from mesh.messages import Heartbeat


def member(instance: str, *, since: float = 5.0, health: str = "passing") -> Member:
    record = Heartbeat(
        service="orders",
        instance=instance,
        host="10.0.0.7",
        port=9000,
        zone="eu-1a",
        weight=3,
        meta={"team": "checkout"},
        incarnation=1,
        seq=1,
        health=health,  # type: ignore[arg-type]
    )
    return Member(record, State.ALIVE, heard=since, since=since, seq=1)


def test_of_carries_the_record_and_since() -> None:
    assert of(member("a", since=12.5)) == Endpoint(
        "orders", "a", "10.0.0.7", 9000, 3, "eu-1a", {"team": "checkout"}, 12.5
    )


def test_since_defaults_to_long_ago() -> None:
    assert Endpoint("orders", "a", "h", 1, 1, "", {}).since == 0.0


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        (set(), [0, 1, 2]),
        ({"i1"}, [0, 2]),
        ({"i0", "i2", "elsewhere"}, [1]),
        ({"i0", "i1", "i2"}, [0, 1, 2]),  # every one tried: all are allowed again
    ],
)
def test_allowed(exclude: set[str], expected: list[int]) -> None:
    assert allowed(endpoints(1, 1, 1), exclude) == expected
