"""mesh.forwarding.directory: members of the view as the balancers see them."""

from __future__ import annotations

from mesh.balance.endpoint import Endpoint
from mesh.forwarding.directory import endpoint_of
from mesh.membership.view import Member, State
from mesh.messages import Heartbeat


def member(instance: str, *, since: float = 5.0) -> Member:
    record = Heartbeat(
        service="orders",
        instance=instance,
        host="10.0.0.7",
        port=9000,
        zone="eu-1a",
        version="v2",
        weight=3,
        meta={"team": "checkout"},
        incarnation=1,
        seq=1,
    )
    return Member(record, State.ALIVE, heard=since, since=since, seq=1)


def test_an_endpoint_carries_the_record_and_since() -> None:
    assert endpoint_of(member("a", since=12.5)) == Endpoint(
        "orders", "a", "10.0.0.7", 9000, 3, "eu-1a", {"team": "checkout"}, 12.5, "v2"
    )
