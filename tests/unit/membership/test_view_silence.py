"""mesh.membership.view: silence makes members suspect, down, then gone; a frozen view waits."""

from __future__ import annotations

import pytest
from factories import beat, heartbeat, kinds, leave
from view_factories import announced, events, member, ticks

from mesh.membership import view as v
from mesh.membership.view import State

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


def test_thaw_expects_members_beating_slowly_under_presence_at_our_own_pace() -> None:
    """Away from NATS, a `gone` may have been missed: after the thaw a member advertising
    30 s beats is suspect after our own 3 s unless heard again; any message, a short beat
    too, puts it back on its own pace (no flapping between its beats)."""
    view = announced(heartbeat("i1", seq=1, interval=30.0), heartbeat("i2", seq=1, interval=30.0))
    view = v.freeze(view, 10.0)
    view = v.thaw(view, 20.0)
    view, _ = v.apply(view, beat("i2", seq=2), 20.5)  # answered the reconnect's sync
    view, effects = v.tick(view, 23.1)
    assert (member(view, "i1").state, member(view, "i2").state) == (State.SUSPECT, State.ALIVE)
    assert kinds(effects) == ["instance.suspect"]
    view, _ = v.tick(view, 20.5 + 89.0)  # i2's own 3 x 30 s, not ours
    assert member(view, "i2").state is State.ALIVE
