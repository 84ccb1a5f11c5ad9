"""mesh.membership.view: conflicting and stale messages, restarts (new incarnations) and revival."""

from __future__ import annotations

from typing import Any

import pytest
from factories import heartbeat, kinds, leave
from view_factories import announced, ids, member, routable, ticks

from mesh.membership import view as v
from mesh.membership.view import Dropped, State
from mesh.messages import Event

# --- conflicts: an instance id belongs to one service -----------------------------------


def test_a_second_service_claiming_an_instance_id_is_refused() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    after, effects = v.apply(view, heartbeat(service="billing", seq=2), 0.5)
    assert after is view
    assert kinds(effects) == ["dropped:conflict"]
    after, effects = v.apply(view, leave(service="billing", seq=3), 0.5)
    assert after is view
    assert kinds(effects) == ["dropped:conflict"]


# --- reordering and staleness ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("late", "why"),
    [
        (heartbeat(incarnation=2, seq=9), "lower seq"),
        (heartbeat(incarnation=2, seq=10), "equal seq"),
        (heartbeat(incarnation=2, seq=10, weight=5), "equal seq, different content"),
        (heartbeat(incarnation=1, seq=99), "lower incarnation, higher seq"),
        (heartbeat(incarnation=0, seq=0), "lower incarnation"),
    ],
)
def test_stale_heartbeats_are_dropped_and_change_nothing(late: Any, why: str) -> None:
    view = announced(heartbeat(incarnation=2, seq=10), now=0.0)
    after, effects = v.apply(view, late, 1.0)
    assert after is view, why
    assert effects == [Dropped("stale")]
    assert member(after).heard == 0.0


def test_stale_heartbeat_cannot_revive_a_down_member() -> None:
    view, _ = v.tick(announced(heartbeat(seq=5), now=0.0), 6.0)
    after, effects = v.apply(view, heartbeat(seq=5), 7.0)
    assert after is view
    assert effects == [Dropped("stale")]


# --- restarts and revival ---------------------------------------------------------------


@pytest.mark.parametrize(
    "before",
    [
        pytest.param([heartbeat(incarnation=1, seq=50)], id="alive"),
        pytest.param([heartbeat(incarnation=1, seq=50, health="failing")], id="failing"),
    ],
)
def test_a_higher_incarnation_replaces_the_member(before: list[Any]) -> None:
    view = announced(*before, now=0.0)
    hb = heartbeat(incarnation=2, seq=0, port=9100)
    after, effects = v.apply(view, hb, 5.0)
    m = member(after)
    assert (m.record, m.state, m.heard, m.since, m.seq) == (hb, State.ALIVE, 5.0, 5.0, 0)
    assert ids(effects) == ["arrival:orders:i1:2"]
    assert kinds(effects) == ["instance.restarted"]
    assert after.version == view.version + 1
    assert m.routable


def test_a_restart_after_a_goodbye_is_a_new_start() -> None:
    view = announced(heartbeat(incarnation=1, seq=50), leave(seq=51), now=0.0)
    after, effects = v.apply(view, heartbeat(incarnation=2, seq=0), 5.0)
    assert member(after).state is State.ALIVE
    assert ids(effects) == ["arrival:orders:i1:2"]
    assert kinds(effects) == ["instance.up"]


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        pytest.param([heartbeat(incarnation=1, seq=50)], "instance.restarted", id="alive"),
        pytest.param([heartbeat(seq=50), leave(seq=51)], "instance.up", id="left"),
    ],
)
def test_a_new_incarnation_seen_late_is_named_like_its_start(
    before: list[Any], expected: str
) -> None:
    """A node that knew the old incarnation witnessed the change, whatever seq it missed:
    the id names the incarnation, as the nodes that saw its first heartbeat name it."""
    view = announced(*before, now=0.0)
    failing = heartbeat(incarnation=2, seq=5, health="failing")
    _, effects = v.apply(view, failing, 5.0)
    # The check failing since some seq this node did not see: others said when.
    assert (kinds(effects), ids(effects)) == ([expected], ["arrival:orders:i1:2"])


def test_a_higher_incarnation_replaces_a_down_member() -> None:
    view, _ = v.tick(announced(heartbeat(incarnation=1, seq=50), now=0.0), 6.0)
    after, effects = v.apply(view, heartbeat(incarnation=2, seq=0), 7.0)
    assert member(after).state is State.ALIVE
    assert kinds(effects) == ["instance.restarted"]


@pytest.mark.parametrize(
    ("silence", "previous"),
    [(3.0, "suspect"), (6.0, "down"), (50.0, "down")],
)
def test_a_newer_heartbeat_of_the_same_incarnation_revives(silence: float, previous: str) -> None:
    view, _ = v.tick(announced(heartbeat(seq=1), now=0.0), silence)
    assert member(view).state.value == previous
    assert routable(view) == {}
    after, effects = v.apply(view, heartbeat(seq=2), silence + 0.5)
    m = member(after)
    assert (m.state, m.since, m.heard, m.seq) == (State.ALIVE, silence + 0.5, silence + 0.5, 2)
    assert effects == [
        Event(
            id="instance.up:orders:i1:1:2",
            kind="instance.up",
            service="orders",
            instance="i1",
            detail={"previous": previous},
        )
    ]
    assert after.version == view.version + 1
    assert routable(after) == {"orders": [m]}


def test_revived_member_gets_a_fresh_suspect_period() -> None:
    view, _ = v.tick(announced(heartbeat(seq=1), now=0.0), 6.0)
    view, _ = v.apply(view, heartbeat(seq=2), 10.0)
    _, trace = ticks(view, 12.99, 13.0)
    assert trace == [(12.99, "alive", []), (13.0, "suspect", ["instance.suspect"])]


def test_draining_heartbeat_after_suspect_reports_draining_not_up() -> None:
    view, _ = v.tick(announced(heartbeat(seq=1), now=0.0), 3.0)
    view, effects = v.apply(view, heartbeat(seq=2, draining=True), 3.5)
    assert member(view).state is State.DRAINING
    assert kinds(effects) == ["instance.draining"]
