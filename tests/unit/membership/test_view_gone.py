"""mesh.membership.view: NATS saw a connection close (presence): suspect at once, back on a
heartbeat, and nothing at all for what the view does not know."""

from __future__ import annotations

from typing import Any

import pytest
from factories import heartbeat, kinds, leave, new_view
from view_factories import announced, events, ids, member, routable, ticks

from mesh.membership import view as v
from mesh.membership.view import State
from mesh.messages import Gone


def gone(
    instance: str = "i1", service: str = "orders", *, incarnation: int = 1, reason: str = ""
) -> Gone:
    return Gone(
        service=service, instance=instance, incarnation=incarnation, reason=reason, witness="gw"
    )


def test_a_closed_connection_makes_an_alive_member_suspect_at_once() -> None:
    view = announced(heartbeat(seq=4), now=0.0)
    after, effects = v.apply(view, gone(reason="Client Closed"), 0.3)
    m = member(after)
    assert (m.state, m.since, m.heard, m.seq) == (State.SUSPECT, 0.3, 0.0, 4)
    assert routable(after) == {}
    assert after.version == view.version + 1
    # The id is the one silence would give (the last heartbeat's seq): one happening, one
    # stored event, whichever way each node found out.
    assert ids(effects) == ["instance.suspect:orders:i1:1:4"]
    assert events(effects)[0].detail == {"cause": "connection closed", "reason": "Client Closed"}


def test_silence_still_takes_it_down_on_the_heartbeat_clock() -> None:
    view, _ = v.apply(announced(heartbeat(seq=1), now=0.0), gone(), 0.1)
    _, trace = ticks(view, 3.0, 5.99, 6.0)
    # No second suspect at 3 s; down after 6 silent intervals from the last heartbeat.
    assert trace == [(3.0, "suspect", []), (5.99, "suspect", []), (6.0, "down", ["instance.down"])]


def test_a_later_heartbeat_of_the_same_incarnation_brings_it_back() -> None:
    """A live agent whose connection moved to another NATS node: suspect for the moment
    between the advisory and the heartbeat it sends on reconnecting."""
    view, _ = v.apply(announced(heartbeat(seq=1), now=0.0), gone(), 0.1)
    after, effects = v.apply(view, heartbeat(seq=2), 0.15)
    assert member(after).state is State.ALIVE
    assert kinds(effects) == ["instance.up"]
    assert events(effects)[0].detail == {"previous": "suspect"}
    assert routable(after)["orders"] == [member(after)]


def test_copies_from_several_watchers_change_nothing_more() -> None:
    view, first = v.apply(announced(heartbeat(seq=1), now=0.0), gone(), 0.1)
    again, effects = v.apply(view, gone(reason="Client Closed"), 0.12)
    assert (kinds(first), again, effects) == (["instance.suspect"], view, [])


@pytest.mark.parametrize(
    ("before", "message", "expected"),
    [
        pytest.param([], gone(), ["dropped:unknown"], id="stranger"),
        pytest.param([heartbeat()], gone("i2"), ["dropped:unknown"], id="another-instance"),
        pytest.param(
            [heartbeat()], gone(service="billing"), ["dropped:conflict"], id="another-service"
        ),
        pytest.param(
            [heartbeat(incarnation=2)], gone(incarnation=1), ["dropped:stale"], id="predecessor"
        ),
        pytest.param(
            [heartbeat(incarnation=1)], gone(incarnation=2), ["dropped:stale"], id="unseen-newer"
        ),
        pytest.param([heartbeat(seq=1), leave(seq=2)], gone(), [], id="after-its-goodbye"),
        pytest.param([heartbeat(draining=True)], gone(), ["instance.suspect"], id="draining"),
    ],
)
def test_what_a_closed_connection_does(
    before: list[Any], message: Gone, expected: list[str]
) -> None:
    view = announced(*before, now=0.0) if before else new_view()
    after, effects = v.apply(view, message, 1.0)
    assert kinds(effects) == expected
    if expected and expected[0].startswith("dropped"):
        assert after is view


def test_a_down_member_stays_down() -> None:
    view, _ = v.tick(announced(heartbeat(seq=1), now=0.0), 6.0)
    after, effects = v.apply(view, gone(), 6.5)
    assert (after, effects) == (view, [])
    assert member(after).state is State.DOWN
