"""mesh.membership.view: first sightings, health, routability and which changes bump the version."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import pytest
from factories import LAN, event, evidence, heartbeat, kinds, leave, new_view, sync
from view_factories import announced, events, ids, member, routable, ticks

from mesh.membership import view as v
from mesh.membership.view import State

# --- announce ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "state", "routable", "expected"),
    [
        ({}, State.ALIVE, True, ["instance.up"]),
        ({"health": "failing"}, State.ALIVE, False, ["instance.up", "health.failing"]),
        ({"draining": True}, State.DRAINING, False, ["instance.up"]),
        ({"role": "gateway"}, State.ALIVE, False, ["instance.up"]),
    ],
)
def test_first_heartbeat_announces(
    fields: dict[str, Any], state: State, routable: bool, expected: list[str]
) -> None:
    hb = heartbeat(seq=1, **fields)
    view, effects = v.apply(new_view(), hb, 10.0)
    m = member(view)
    assert (m.record, m.state, m.heard, m.since, m.seq) == (hb, state, 10.0, 10.0, 1)
    assert m.routable is routable
    assert kinds(effects) == expected
    # An incarnation's arrival is named by the incarnation; a state by the seq that began it.
    assert ids(effects) == ["arrival:orders:i1:1", "health.failing:orders:i1:1:1"][: len(expected)]
    assert {(e.service, e.instance) for e in events(effects)} == {("orders", "i1")}
    assert view.version == 1


@pytest.mark.parametrize("fields", [{}, {"health": "failing"}, {"draining": True}])
def test_a_first_sighting_after_the_first_heartbeat_is_no_happening(
    fields: dict[str, Any],
) -> None:
    """A node that joins late sees what was already so: it records it and says nothing."""
    hb = heartbeat(seq=40, **fields)
    view, effects = v.apply(new_view(), hb, 10.0)
    m = member(view)
    assert (m.record, m.heard, m.since, m.seq) == (hb, 10.0, 10.0, 40)
    assert effects == []
    assert view.version == 1


START = 1_764_491_000.123  # the instance's start on its wall clock: incarnation in ms
GRACE = LAN.arrival_grace


@pytest.mark.parametrize(
    ("age", "announced_arrival"),
    [
        (0.0, True),
        (GRACE - 0.01, True),
        (GRACE + 0.01, False),  # older: it was up before this node came, the others said so
        (-(GRACE - 0.01), True),  # the instance's clock a little ahead of this node's
        (-(GRACE + 0.01), False),  # far ahead: never young, or this node would tell it any time
    ],
)
def test_a_late_first_sighting_of_a_young_incarnation_tells_its_arrival(
    age: float, announced_arrival: bool
) -> None:
    """Nodes started together subscribe after one another's first heartbeats: one that
    first sees an incarnation within the grace of its start tells its arrival, under the
    id of those that saw the first heartbeat. Not the failing check: it did not see when
    that began."""
    hb = heartbeat(seq=40, incarnation=int(START * 1000), health="failing")
    first = v.apply(new_view(), msgspec.structs.replace(hb, seq=1), 0.0)[1]
    view, effects = v.apply(new_view(), hb, 10.0, wall=START + age)
    assert member(view).record == hb
    assert ids(effects) == (ids(first)[:1] if announced_arrival else [])
    assert kinds(effects) == (["instance.up"] if announced_arrival else [])


@pytest.mark.parametrize(("wall", "grace"), [(None, GRACE), (START, 0.0)])
def test_without_a_wall_clock_or_a_grace_only_the_first_heartbeat_tells(
    wall: float | None, grace: float
) -> None:
    hb = heartbeat(seq=2, incarnation=int(START * 1000))
    view = v.View(replace(LAN, arrival_grace=grace))
    assert v.apply(view, hb, 10.0, wall=wall)[1] == []


def test_heartbeat_refreshes_heard_but_keeps_since() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    hb = heartbeat(seq=2, zone="eu-1")
    view, effects = v.apply(view, hb, 0.9)
    m = member(view)
    assert (m.record, m.state, m.heard, m.since, m.seq) == (hb, State.ALIVE, 0.9, 0.0, 2)
    assert effects == []


def test_messages_that_are_not_about_membership_change_nothing() -> None:
    view = announced()
    for message in (sync(), evidence(), event()):
        assert v.apply(view, message, 1.0) == (view, [])


# --- health -------------------------------------------------------------------------------


def test_health_failing_then_passing() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    assert routable(view) == {"orders": [member(view)]}

    view, effects = v.apply(view, heartbeat(seq=2, health="failing"), 1.0)
    m = member(view)
    assert (m.state, m.since, m.routable) == (State.ALIVE, 0.0, False)  # an overlay, not a state
    assert routable(view) == {}
    assert ids(effects) == ["health.failing:orders:i1:1:2"]
    assert view.version == 2

    view, effects = v.apply(view, heartbeat(seq=3, health="failing"), 2.0)
    assert effects == []
    assert view.version == 2

    view, effects = v.apply(view, heartbeat(seq=4), 3.0)
    assert member(view).routable
    assert routable(view) == {"orders": [member(view)]}
    assert ids(effects) == ["health.passing:orders:i1:1:4"]
    assert view.version == 3


def test_an_unhealthy_member_still_expires_by_silence() -> None:
    view = announced(heartbeat(health="failing"), now=0.0)
    _, trace = ticks(view, 3.0, 6.0)
    assert trace == [(3.0, "suspect", ["instance.suspect"]), (6.0, "down", ["instance.down"])]


# --- version: bumped only by what can change routing ------------------------------------


@pytest.mark.parametrize(
    ("change", "bumps"),
    [
        ({}, False),  # only seq
        ({"interval": 2.0}, False),
        ({"admin_port": 15000}, False),
        ({"weight": 5}, True),
        ({"host": "10.0.0.2"}, True),
        ({"port": 9001}, True),
        ({"zone": "b"}, True),
        ({"version": "2"}, True),
        ({"meta": {"canary": "true"}}, True),
        ({"health": "failing"}, True),
        ({"draining": True}, True),
        ({"role": "gateway"}, True),
    ],
)
def test_version_bumps_only_on_routing_relevant_changes(
    change: dict[str, Any], bumps: bool
) -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    after, _ = v.apply(view, heartbeat(seq=2, **change), 0.5)
    assert after.version == view.version + bumps
    assert member(after).seq == 2


@pytest.mark.parametrize(
    ("step", "bumps"),
    [
        pytest.param(lambda w: v.tick(w, 1.0)[0], False, id="tick-nothing-due"),
        pytest.param(lambda w: v.tick(w, 3.0)[0], True, id="tick-suspect"),
        pytest.param(lambda w: v.freeze(w, 1.0), False, id="freeze"),
        pytest.param(lambda w: v.apply(w, heartbeat(seq=0), 1.0)[0], False, id="stale"),
        pytest.param(lambda w: v.apply(w, leave(seq=2), 1.0)[0], True, id="leave"),
        pytest.param(lambda w: v.apply(w, heartbeat("i2"), 1.0)[0], True, id="new-member"),
    ],
)
def test_version_on_other_steps(step: Any, bumps: bool) -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    assert step(view).version == view.version + bumps


# --- Member.routable -----------------------------------------------------------------------------


def test_only_alive_passing_agents_not_draining_are_routable() -> None:
    view = announced(
        heartbeat("o-c", "orders"),
        heartbeat("o-a", "orders"),
        heartbeat("b-1", "billing"),
        heartbeat("o-b", "orders"),
        heartbeat("x-fail", "orders", health="failing"),
        heartbeat("x-drain", "orders", draining=True),
        heartbeat("x-gw", "edge", role="gateway"),
        heartbeat("x-left", "billing", seq=1),
        heartbeat("x-quiet", "billing", interval=0.1),
        now=0.0,
    )
    view, _ = v.apply(view, leave("x-left", "billing", seq=2), 0.0)
    view, _ = v.tick(view, 0.35)  # x-quiet (0.1 s interval) is suspect
    assert member(view, "x-quiet").state is State.SUSPECT
    assert {m.instance for m in view.members.values() if m.routable} == {
        "b-1",
        "o-a",
        "o-b",
        "o-c",
    }


def test_gateways_are_members_but_never_routable() -> None:
    view = announced(heartbeat("gw-1", "edge", role="gateway"), now=0.0)
    assert member(view, "gw-1").state is State.ALIVE
    assert not member(view, "gw-1").routable
    assert routable(view) == {}
