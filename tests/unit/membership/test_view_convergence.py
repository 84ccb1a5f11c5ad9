"""mesh.membership.view: observers agree on event ids and final records in any message order."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from factories import LAN, heartbeat, leave, new_view
from hypothesis import given, settings
from hypothesis import strategies as st
from view_factories import announced, member

from mesh.membership import view as v
from mesh.membership.view import Dropped
from mesh.messages import Event
from mesh.timing import PRESETS, Timing

# --- event ids: two observers that saw the same messages publish the same ids -------------


STORY: list[tuple[float, Any]] = [
    (0.0, heartbeat(seq=1)),
    (0.5, heartbeat("i2", seq=1, health="failing")),
    (1.0, heartbeat(seq=2, health="failing")),
    (2.0, heartbeat(seq=3)),
    (2.5, heartbeat("i2", seq=2)),
    (3.0, leave("i2", seq=3, reason="drain")),
    (20.0, "tick"),  # i1 silent: suspect or down (the id does not depend on which tick)
    (21.0, heartbeat(seq=4)),
    (22.0, heartbeat(incarnation=2, seq=0)),
    (23.0, leave(incarnation=2, seq=1)),
]
RESTART = 8  # the story's restart of i1, without a goodbye


def observe(
    timing: Timing, offset: float, scale: float, joins: int = 0, wall: float | None = None
) -> list[str]:
    """One observer's event ids for a fixed story, on its own clock and preset; it hears
    the story from message `joins` on (a node that joined then), its wall clock reading
    `wall` plus the story's time (None: no wall clock, no arrival grace)."""
    view = new_view(timing)
    out: list[str] = []
    for at, message in STORY[joins:]:
        now = offset + at * scale
        if message == "tick":
            view, effects = v.tick(view, now)
        else:
            view, effects = v.apply(view, message, now, wall=None if wall is None else wall + at)
        out += [e.id for e in effects if isinstance(e, Event) and e.kind != "instance.suspect"]
    return out


def test_two_observers_derive_identical_event_ids() -> None:
    a = observe(LAN, offset=0.0, scale=1.0)
    b = observe(PRESETS["local"], offset=12_345.678, scale=1.0)
    assert a == b
    assert a == [
        "arrival:orders:i1:1",
        "arrival:orders:i2:1",
        "health.failing:orders:i2:1:1",
        "health.failing:orders:i1:1:2",
        "health.passing:orders:i1:1:3",
        "health.passing:orders:i2:1:2",
        "instance.draining:orders:i2:1:3",
        "instance.down:orders:i1:1:3",
        "instance.down:orders:i2:1:3",  # draining, then silent
        "instance.up:orders:i1:1:4",
        "arrival:orders:i1:2",  # instance.restarted
        "instance.left:orders:i1:2:1",
    ]
    assert len(set(a)) == len(a)


# The story's incarnations are 1 and 2 (ms): its instances start at about 0.0 s of wall time.
YOUNG = 0.0  # a wall clock on which the story happens within the arrival grace
OLD = 3600.0  # one on which it happens an hour after the starts


@pytest.mark.parametrize("wall", [None, YOUNG, OLD])
@pytest.mark.parametrize("joins", range(1, len(STORY)))
def test_a_late_observer_tells_nothing_the_others_did_not(joins: int, wall: float | None) -> None:
    """A node joining at any point (even during i1's failure, or after it died, when it
    takes the restart for a start) publishes only ids that the node there from the start
    published: the stream gets no second copy of anything."""
    late = observe(LAN, offset=50.0, scale=1.0, joins=joins, wall=wall)
    assert set(late) <= set(observe(LAN, offset=0.0, scale=1.0))


@pytest.mark.parametrize("joins", range(1, RESTART))
def test_a_late_observer_within_the_arrival_grace_tells_the_arrivals_it_missed(
    joins: int,
) -> None:
    """It missed i1's first heartbeat: joined within the grace of i1's start, it tells
    i1's arrival, as the node there from the start named it; joined later, it does not."""
    assert "arrival:orders:i1:1" in observe(LAN, offset=50.0, scale=1.0, joins=joins, wall=YOUNG)
    assert "arrival:orders:i1:1" not in observe(LAN, offset=50.0, scale=1.0, joins=joins, wall=OLD)


def test_a_late_observer_that_never_knew_the_old_incarnation_sees_a_start() -> None:
    """A node that joined after i1 died takes its restart for a new instance coming up
    (documented): instance.up where the others say instance.restarted, under the same
    id, so the stream keeps one of the two."""
    assert observe(LAN, offset=0.0, scale=1.0, joins=RESTART) == [
        "arrival:orders:i1:2",
        "instance.left:orders:i1:2:1",
    ]


def test_derived_events_carry_no_observer_specific_fields() -> None:
    _, effects = v.apply(new_view(), heartbeat(), 123.0)
    (up,) = effects
    assert isinstance(up, Event)
    assert (up.node, up.at, up.detail) == ("", 0.0, {})


# --- properties -------------------------------------------------------------------------------


@st.composite
def shuffled_heartbeats(draw: st.DrawFn) -> tuple[list[Any], list[float | None]]:
    """Distinct seqs of one incarnation, in any order, each followed by a tick or not."""
    seqs = draw(st.lists(st.integers(0, 1_000), min_size=1, max_size=25, unique=True))
    order = draw(st.permutations(seqs))
    hbs = [
        heartbeat(seq=s, weight=1 + s % 7, zone=f"z{s}", health=("passing", "failing")[s % 2])
        for s in order
    ]
    gaps = draw(
        st.lists(st.one_of(st.none(), st.floats(0, 1.5)), min_size=len(hbs), max_size=len(hbs))
    )
    return hbs, gaps


@settings(max_examples=300, deadline=None)
@given(shuffled_heartbeats())
def test_any_order_of_heartbeats_ends_on_the_highest_seq(
    case: tuple[list[Any], list[float | None]],
) -> None:
    hbs, gaps = case
    view = new_view()
    now = 0.0
    last = (-1, -1)
    for hb, gap in zip(hbs, gaps, strict=True):
        now += 0.5
        view, effects = v.apply(view, hb, now)
        if gap is not None:  # maybe some silence, and a tick (never long enough to forget)
            now += gap
            view, more = v.tick(view, now)
            effects += more
        m = member(view)
        key = (m.record.incarnation, m.seq)
        assert key >= last, "the view went backwards"
        assert m.seq == m.record.seq
        last = key
        if hb.seq < max(h.seq for h in hbs[: hbs.index(hb)] or [hb]):
            assert Dropped("stale") in effects
    assert member(view).record == max(hbs, key=lambda h: h.seq)
    assert member(view).seq == max(h.seq for h in hbs)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 20)), min_size=1, max_size=25, unique=True
    ).flatmap(st.permutations)
)
def test_any_order_across_incarnations_ends_on_the_highest_incarnation_and_seq(
    pairs: list[tuple[int, int]],
) -> None:
    view = new_view()
    last = (-1, -1)
    for i, (incarnation, seq) in enumerate(pairs):
        view, _ = v.apply(view, heartbeat(incarnation=incarnation, seq=seq), float(i))
        m = member(view)
        assert (m.record.incarnation, m.seq) >= last
        last = (m.record.incarnation, m.seq)
    assert last == max(pairs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=20, unique=True).flatmap(st.permutations))
def test_two_observers_with_different_orders_agree_on_the_final_record(seqs: list[int]) -> None:
    a = announced(*(heartbeat(seq=s, weight=s + 1) for s in seqs))
    b = announced(*(heartbeat(seq=s, weight=s + 1) for s in sorted(seqs)))
    assert member(a).record == member(b).record
    assert a.members.keys() == b.members.keys()


def test_apply_never_mutates_its_input() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    before = (dict(view.members), view.version)
    v.apply(view, heartbeat(seq=2, weight=9), 1.0)
    v.apply(view, leave(seq=2), 1.0)
    v.tick(view, 100.0)
    assert (dict(view.members), view.version) == before
    assert msgspec.structs.asdict(member(view).record)["weight"] == 1
