"""mesh.view: the membership state machine, driven by a manual clock (plain floats)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from factories import LAN, event, evidence, feed, heartbeat, kinds, leave, new_view, sync
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh import view as v
from mesh.messages import Event, Load
from mesh.timing import PRESETS, Timing
from mesh.view import Dropped, State

# --- helpers ---------------------------------------------------------------------------


def announced(*messages: Any, now: float = 0.0, timing: Timing = LAN) -> v.View:
    """A view that has applied `messages` (default: one heartbeat of orders/i1) at `now`."""
    view, _ = feed(new_view(timing), *(messages or (heartbeat(),)), now=now)
    return view


def ticks(view: v.View, *times: float) -> tuple[v.View, list[tuple[float, str, list[str]]]]:
    """Tick at each time; return the view and (time, state of i1 or 'gone', event kinds)."""
    trace = []
    for now in times:
        view, effects = v.tick(view, now)
        member = view.members.get("i1")
        trace.append((now, member.state.value if member else "gone", kinds(effects)))
    return view, trace


def events(effects: list[v.Effect]) -> list[Event]:
    return [e for e in effects if isinstance(e, Event)]


def ids(effects: list[v.Effect]) -> list[str]:
    return [e.id for e in events(effects)]


def member(view: v.View, instance: str = "i1") -> v.Member:
    return view.members[instance]


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
    hb = heartbeat(seq=4, **fields)
    view, effects = v.apply(new_view(), hb, 10.0)
    m = member(view)
    assert (m.record, m.state, m.heard, m.since, m.seq) == (hb, state, 10.0, 10.0, 4)
    assert m.routable is routable
    assert kinds(effects) == expected
    # A first sighting leaves the seq out: observers that start later agree on the id.
    assert ids(effects) == [f"{kind}:orders:i1:1:first" for kind in expected]
    assert {(e.service, e.instance) for e in events(effects)} == {("orders", "i1")}
    assert view.version == 1


def test_heartbeat_refreshes_heard_but_keeps_since() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    hb = heartbeat(seq=2, load=Load(inflight=3, rps=9.5))
    view, effects = v.apply(view, hb, 0.9)
    m = member(view)
    assert (m.record, m.state, m.heard, m.since, m.seq) == (hb, State.ALIVE, 0.9, 0.0, 2)
    assert effects == []


def test_messages_that_are_not_about_membership_change_nothing() -> None:
    view = announced()
    for message in (sync(), evidence(), event()):
        assert v.apply(view, message, 1.0) == (view, [])


# --- silence: suspect after 3 of the sender's intervals, down after 6, then forgotten --


@pytest.mark.parametrize(
    ("interval", "trace"),
    [
        (
            1.0,
            [
                (2.99, "alive", []),
                (3.0, "suspect", ["instance.suspect"]),
                (5.99, "suspect", []),
                (6.0, "down", ["instance.down"]),
                (65.99, "down", []),
                (66.0, "gone", []),  # forget_after (60 s) counted from entering down
            ],
        ),
        (
            0.5,  # a faster sender is suspected sooner, whatever the observer's preset
            [
                (1.49, "alive", []),
                (1.5, "suspect", ["instance.suspect"]),
                (3.0, "down", ["instance.down"]),
                (62.99, "down", []),
                (63.0, "gone", []),
            ],
        ),
        (
            5.0,
            [
                (14.99, "alive", []),
                (15.0, "suspect", ["instance.suspect"]),
                (29.99, "suspect", []),
                (30.0, "down", ["instance.down"]),
            ],
        ),
        (
            3600.0,  # clamped to MAX_INTERVAL (60 s): a silent member cannot linger an hour
            [
                (179.0, "alive", []),
                (180.0, "suspect", ["instance.suspect"]),
                (360.0, "down", ["instance.down"]),
            ],
        ),
        (
            0.001,  # clamped to MIN_INTERVAL (0.05 s)
            [
                (0.14, "alive", []),
                (0.16, "suspect", ["instance.suspect"]),
                (0.31, "down", ["instance.down"]),
            ],
        ),
    ],
)
def test_silence_is_measured_in_the_senders_interval(
    interval: float, trace: list[tuple[float, str, list[str]]]
) -> None:
    view = announced(heartbeat(interval=interval), now=0.0)
    _, got = ticks(view, *(t for t, _, _ in trace))
    assert got == trace


def test_a_long_gap_goes_straight_to_down() -> None:
    view, effects = v.tick(announced(now=0.0), 100.0)
    assert member(view).state is State.DOWN
    assert member(view).since == 100.0
    assert kinds(effects) == ["instance.down"]


def test_tick_keeps_the_record_and_heard() -> None:
    hb = heartbeat(seq=7)
    view, _ = v.tick(announced(hb, now=1.0), 4.0)
    assert (member(view).record, member(view).heard, member(view).seq) == (hb, 1.0, 7)
    assert (member(view).state, member(view).since) == (State.SUSPECT, 4.0)


def test_tick_with_nothing_due_returns_the_same_view() -> None:
    view = announced(now=0.0)
    assert v.tick(view, 1.0) == (view, [])
    assert v.tick(view, 1.0)[0] is view


def test_heartbeats_keep_a_member_alive_indefinitely() -> None:
    view = announced(heartbeat(seq=0), now=0.0)
    for seq in range(1, 50):
        view, _ = v.apply(view, heartbeat(seq=seq), seq * 2.5)  # 2.5 s < 3 intervals
        view, effects = v.tick(view, seq * 2.5 + 2.9)
        assert effects == []
    assert member(view).state is State.ALIVE


def test_a_draining_member_also_expires() -> None:
    view = announced(heartbeat(draining=True), now=0.0)
    _, trace = ticks(view, 3.0, 6.0)
    assert trace == [(3.0, "suspect", ["instance.suspect"]), (6.0, "down", ["instance.down"])]


# --- leave --------------------------------------------------------------------------------


def test_leave_shutdown_is_left_then_forgotten() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    view, effects = v.apply(view, leave(seq=2), 1.0)
    m = member(view)
    assert (m.state, m.since, m.heard, m.seq) == (State.LEFT, 1.0, 1.0, 2)
    assert not m.routable
    assert kinds(effects) == ["instance.left"]
    assert ids(effects) == ["instance.left:orders:i1:1:2"]
    assert v.routable(view) == {}
    _, trace = ticks(view, 10.0, 60.99, 61.0)  # no suspect/down for a member that left
    assert trace == [(10.0, "left", []), (60.99, "left", []), (61.0, "gone", [])]


def test_leave_drain_stops_new_requests_but_keeps_the_member() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    version = view.version
    view, effects = v.apply(view, leave(seq=2, reason="drain"), 1.0)
    m = member(view)
    assert (m.state, m.since, m.seq, m.record.draining) == (State.DRAINING, 1.0, 2, True)
    assert not m.routable
    assert v.routable(view) == {}
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


def test_a_second_service_claiming_an_instance_id_is_refused() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    after, effects = v.apply(view, heartbeat(service="billing", seq=2), 0.5)
    assert after is view
    assert kinds(effects) == ["dropped:conflict"]
    after, effects = v.apply(view, leave(service="billing", seq=3), 0.5)
    assert after is view
    assert kinds(effects) == ["dropped:conflict"]


@pytest.mark.parametrize("late_seq", [1, 2, 3, 4], ids=lambda s: f"seq{s}")
def test_a_heartbeat_racing_its_own_leave_is_dropped(late_seq: int) -> None:
    """Sent before the leave (lower seq) or not: the goodbye wins for this incarnation."""
    view = announced(heartbeat(seq=1), leave(seq=3), now=0.0)
    after, effects = v.apply(view, heartbeat(seq=late_seq), 0.1)
    assert after is view
    assert kinds(effects) == ["dropped:stale"]
    assert member(after).state is State.LEFT


# --- health -------------------------------------------------------------------------------


def test_health_failing_then_passing() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    assert v.routable(view) == {"orders": [member(view)]}

    view, effects = v.apply(view, heartbeat(seq=2, health="failing"), 1.0)
    m = member(view)
    assert (m.state, m.since, m.routable) == (State.ALIVE, 0.0, False)  # an overlay, not a state
    assert v.routable(view) == {}
    assert ids(effects) == ["health.failing:orders:i1:1:2"]
    assert view.version == 2

    view, effects = v.apply(view, heartbeat(seq=3, health="failing"), 2.0)
    assert effects == []
    assert view.version == 2

    view, effects = v.apply(view, heartbeat(seq=4), 3.0)
    assert member(view).routable
    assert v.routable(view) == {"orders": [member(view)]}
    assert ids(effects) == ["health.passing:orders:i1:1:4"]
    assert view.version == 3


def test_an_unhealthy_member_still_expires_by_silence() -> None:
    view = announced(heartbeat(health="failing"), now=0.0)
    _, trace = ticks(view, 3.0, 6.0)
    assert trace == [(3.0, "suspect", ["instance.suspect"]), (6.0, "down", ["instance.down"])]


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
    assert ids(effects) == ["instance.restarted:orders:i1:2:0"]
    assert after.version == view.version + 1
    assert m.routable


def test_a_restart_after_a_goodbye_is_a_new_start() -> None:
    view = announced(heartbeat(incarnation=1, seq=50), leave(seq=51), now=0.0)
    after, effects = v.apply(view, heartbeat(incarnation=2, seq=0), 5.0)
    assert member(after).state is State.ALIVE
    assert ids(effects) == ["instance.up:orders:i1:2:first"]


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
    assert v.routable(view) == {}
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
    assert v.routable(after) == {"orders": [m]}


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


# --- freezing while our own NATS connection is down -------------------------------------


def test_frozen_view_expires_nothing_however_long() -> None:
    view = announced(heartbeat(seq=1), now=0.0)
    view = v.freeze(view, 2.0)
    assert view.frozen_at == 2.0
    for now in (3.0, 6.0, 1_000.0, 1e9):
        after, effects = v.tick(view, now)
        assert (after, effects) == (view, [])
    assert member(view).state is State.ALIVE


def test_freeze_twice_keeps_the_first_time_and_thaw_when_not_frozen_is_a_no_op() -> None:
    view = v.freeze(v.freeze(announced(), 2.0), 5.0)
    assert view.frozen_at == 2.0
    live = announced()
    assert v.thaw(live, 9.0) is live


def test_thaw_gives_every_live_member_a_full_suspect_period_from_the_thaw() -> None:
    view = announced(
        heartbeat("i1", seq=1),
        heartbeat("i2", seq=1, draining=True),
        heartbeat("i3", seq=1),
        heartbeat("i4", seq=1),
        now=0.0,
    )
    view, _ = v.apply(view, leave("i3", seq=2), 1.0)
    view, _ = v.tick(view, 3.0)  # i1, i2, i4 suspect
    view, _ = v.apply(view, heartbeat("i1", seq=2), 3.5)  # i1 alive again
    view = v.freeze(view, 4.0)
    view = v.thaw(view, 500.0)
    assert view.frozen_at is None
    heard = {i: (m.state.value, m.heard) for i, m in view.members.items()}
    assert heard == {
        "i1": ("alive", 500.0),
        "i2": ("suspect", 500.0),
        "i3": ("left", 1.0),  # tombstones are not refreshed
        "i4": ("suspect", 500.0),
    }
    after, effects = v.tick(view, 502.99)
    assert effects == []
    after, effects = v.tick(view, 503.0)
    assert {e.instance for e in events(effects)} == {"i1"}
    assert kinds(effects) == ["instance.suspect"]
    after, effects = v.tick(after, 506.0)
    assert sorted(kinds(effects)) == ["instance.down"] * 3


def test_tombstones_are_forgotten_after_a_thaw_on_their_own_schedule() -> None:
    view = announced(heartbeat(seq=1), leave(seq=2), now=0.0)
    view = v.thaw(v.freeze(view, 1.0), 100.0)
    after, _ = v.tick(view, 100.0)
    assert "i1" not in after.members


# --- version: bumped only by what can change routing ------------------------------------


@pytest.mark.parametrize(
    ("change", "bumps"),
    [
        ({"load": Load(inflight=7, rps=100.0, error_rate=0.5, latency_ms=3.0)}, False),
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


# --- routable() -----------------------------------------------------------------------------


def test_routable_groups_by_service_in_instance_order() -> None:
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
    got = {service: [m.instance for m in ms] for service, ms in v.routable(view).items()}
    assert got == {"billing": ["b-1"], "orders": ["o-a", "o-b", "o-c"]}
    assert list(got) == ["billing", "orders"]


def test_gateways_are_members_but_never_routable() -> None:
    view = announced(heartbeat("gw-1", "edge", role="gateway"), now=0.0)
    assert member(view, "gw-1").state is State.ALIVE
    assert not member(view, "gw-1").routable
    assert v.routable(view) == {}


def test_members_of() -> None:
    view = announced(heartbeat("a", "orders"), heartbeat("b", "billing"), heartbeat("c", "orders"))
    assert sorted(m.instance for m in v.members_of(view, "orders")) == ["a", "c"]
    assert list(v.members_of(view, "nobody")) == []


# --- event ids: two observers that saw the same messages publish the same ids -------------


def observe(timing: Timing, offset: float, scale: float) -> list[str]:
    """One observer's event ids for a fixed story, on its own clock and preset."""
    story: list[tuple[float, Any]] = [
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
    view = new_view(timing)
    out: list[str] = []
    for at, message in story:
        now = offset + at * scale
        if message == "tick":
            view, effects = v.tick(view, now)
        else:
            view, effects = v.apply(view, message, now)
        out += [e.id for e in effects if isinstance(e, Event) and e.kind != "instance.suspect"]
    return out


def test_two_observers_derive_identical_event_ids() -> None:
    a = observe(LAN, offset=0.0, scale=1.0)
    b = observe(PRESETS["local"], offset=12_345.678, scale=1.0)
    assert a == b
    assert a == [
        "instance.up:orders:i1:1:first",
        "instance.up:orders:i2:1:first",
        "health.failing:orders:i2:1:first",
        "health.failing:orders:i1:1:2",
        "health.passing:orders:i1:1:3",
        "health.passing:orders:i2:1:2",
        "instance.draining:orders:i2:1:3",
        "instance.down:orders:i1:1:3",
        "instance.down:orders:i2:1:3",  # draining, then silent
        "instance.up:orders:i1:1:4",
        "instance.restarted:orders:i1:2:0",
        "instance.left:orders:i1:2:1",
    ]
    assert len(set(a)) == len(a)


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
        heartbeat(
            seq=s, weight=1 + s % 7, load=Load(inflight=s), health=("passing", "failing")[s % 2]
        )
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
