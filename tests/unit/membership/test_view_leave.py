"""mesh.membership.view: graceful leaves (shutdown or drain) and goodbyes that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from factories import heartbeat, kinds, leave, new_view
from view_factories import announced, ids, member, routable, ticks

from mesh.membership import view as v
from mesh.membership.view import State

# --- leave --------------------------------------------------------------------------------


def test_leave_shutdown_is_left_then_forgotten() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    view, effects = v.apply(view, leave(seq=2), 1.0)
    m = member(view)
    assert (m.state, m.since, m.heard, m.seq) == (State.LEFT, 1.0, 1.0, 2)
    assert not m.routable
    assert kinds(effects) == ["instance.left"]
    assert ids(effects) == ["instance.left:orders:i1:1:2"]
    assert routable(view) == {}
    _, trace = ticks(view, 10.0, 60.99, 61.0)  # no suspect/down for a member that left
    assert trace == [(10.0, "left", []), (60.99, "left", []), (61.0, "gone", [])]


def test_leave_drain_stops_new_requests_but_keeps_the_member() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    version = view.version
    view, effects = v.apply(view, leave(seq=2, reason="drain"), 1.0)
    m = member(view)
    assert (m.state, m.since, m.seq, m.record.draining) == (State.DRAINING, 1.0, 2, True)
    assert not m.routable
    assert routable(view) == {}
    assert kinds(effects) == ["instance.draining"]
    assert view.version == version + 1
    # Its own heartbeats, still draining, keep it draining without new events.
    view, effects = v.apply(view, heartbeat(seq=3, draining=True), 2.0)
    assert (member(view).state, member(view).since, effects) == (State.DRAINING, 1.0, [])


@pytest.mark.parametrize(
    ("before", "message", "expected"),
    [
        pytest.param([], leave(), "dropped:unknown", id="unknown-member"),
        pytest.param([heartbeat(seq=5)], leave(seq=5), "dropped:stale", id="equal-seq"),
        pytest.param([heartbeat(seq=5)], leave(seq=4), "dropped:stale", id="lower-seq"),
        pytest.param(
            [heartbeat(incarnation=2, seq=1)],
            leave(incarnation=1, seq=9),
            "dropped:stale",
            id="older-incarnation",
        ),
        pytest.param([heartbeat(seq=1), leave(seq=2)], leave(seq=3), "dropped:stale", id="left"),
    ],
)
def test_leaves_that_change_nothing(before: list[Any], message: Any, expected: str) -> None:
    view = announced(*before, now=0.0) if before else new_view()
    after, effects = v.apply(view, message, 1.0)
    assert after is view
    assert kinds(effects) == [expected]


def test_a_leave_for_a_down_member_is_stale() -> None:
    view, _ = v.tick(announced(heartbeat(seq=1), now=0.0), 6.0)
    after, effects = v.apply(view, leave(seq=2), 7.0)
    assert after is view
    assert kinds(effects) == ["dropped:stale"]


def test_a_leave_from_an_unseen_newer_incarnation_leaves_a_tombstone_of_it() -> None:
    view = announced(heartbeat(incarnation=1, seq=9), now=0.0)
    after, effects = v.apply(view, leave(incarnation=2, seq=1), 1.0)
    assert member(after).state is State.LEFT
    assert member(after).record.incarnation == 2
    assert after.version == view.version + 1
    assert ids(effects) == ["instance.left:orders:i1:2:1"]
    # A heartbeat of that incarnation sent before its goodbye stays dead.
    late, effects = v.apply(after, heartbeat(incarnation=2, seq=0), 1.1)
    assert late is after
    assert kinds(effects) == ["dropped:stale"]


@pytest.mark.parametrize("late_seq", [1, 2, 3, 4], ids=lambda s: f"seq{s}")
def test_a_heartbeat_racing_its_own_leave_is_dropped(late_seq: int) -> None:
    """Sent before the leave (lower seq) or not: the goodbye wins for this incarnation."""
    view = announced(heartbeat(seq=1), leave(seq=3), now=0.0)
    after, effects = v.apply(view, heartbeat(seq=late_seq), 0.1)
    assert after is view
    assert kinds(effects) == ["dropped:stale"]
    assert member(after).state is State.LEFT
