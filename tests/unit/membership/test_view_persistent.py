"""mesh.membership.view as a persistent structure: steps share, old views stay, expiry is exact."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from factories import LAN, beat, heartbeat, leave

from mesh.membership import view as v
from mesh.membership.view import GONE, Member, State
from mesh.messages import Gone, Message
from mesh.timing import Timing, down_at, forget_at, suspect_at

# Tombstones forgotten soon, so that random runs forget members too.
TIMING = Timing(1.0, 3, 6, 8.0)
INTERVALS = (0.5, 1.0, 2.0)  # members in several deadline queues at once


def brute_force_tick(
    members: dict[str, Member], now: float, timing: Timing
) -> tuple[dict[str, Member], list[tuple[str, str]]]:
    """Expiry as a walk over every member (what `tick` did before its deadline queues)."""
    out: dict[str, Member] = {}
    happened = []
    for instance, m in members.items():
        if m.state in GONE:
            if now < forget_at(m.since, timing):
                out[instance] = m
            continue
        if now >= down_at(m.heard, m.record.interval, timing):
            out[instance] = replace(m, state=State.DOWN, since=now)
            happened.append(("instance.down", instance))
        elif m.state is not State.SUSPECT and now >= suspect_at(m.heard, m.record.interval, timing):
            out[instance] = replace(m, state=State.SUSPECT, since=now)
            happened.append(("instance.suspect", instance))
        else:
            out[instance] = m
    return out, happened


def random_message(rng: random.Random, seqs: dict[str, int]) -> Message:
    index = rng.randrange(12)
    instance, service = f"i{index}", f"s{index % 3}"
    incarnation = 1 + (rng.random() < 0.1)
    seq = seqs[instance] = seqs.get(instance, 0) + rng.choice((1, 1, 1, 2, -1))
    roll = rng.random()
    if roll < 0.35:
        return heartbeat(
            instance,
            service,
            incarnation=incarnation,
            seq=max(seq, 0),
            interval=rng.choice(INTERVALS),
            health=rng.choice(("passing", "passing", "failing")),
            draining=rng.random() < 0.05,
        )
    if roll < 0.82:
        return beat(instance, service, incarnation=incarnation, seq=max(seq, 0))
    if roll < 0.9:  # presence: NATS saw its connection close
        return Gone(service=service, instance=instance, incarnation=incarnation, witness="w")
    return leave(
        instance,
        service,
        incarnation=incarnation,
        seq=max(seq, 0),
        reason="drain" if rng.random() < 0.3 else "shutdown",
    )


def kinds_of(effects: list[v.Effect]) -> list[tuple[str, str]]:
    return sorted((e.kind, e.instance) for e in effects if isinstance(e, v.Event))


# 23 and 129 made DOWN late when presence's `gone` shared the suspect queue (out of
# deadline order); 67 lost entries a whole-queue read must keep.
@pytest.mark.parametrize("seed", [0, 1, 23, 67, 129])
def test_random_runs_agree_with_a_plain_dict_and_a_brute_force_expiry(seed: int) -> None:
    """Each message folded into the long-lived persistent view gives the members that the
    same message gives folded into a view made afresh from a plain dict; each tick expires
    what a walk over every member would; every older view stays as it was."""
    rng = random.Random(seed)
    view, model = v.View(TIMING), dict[str, Member]()
    seqs: dict[str, int] = {}
    now = 0.0
    frozen = False
    kept: list[tuple[v.View, dict[str, Member]]] = []
    for step in range(300):
        now += rng.choice((0.0, 0.1, 0.4, 0.9, 2.5))
        roll = rng.random()
        if roll < 0.7:
            message = random_message(rng, seqs)
            view, effects = v.apply(view, message, now)
            fresh, expected = v.apply(v.holding(TIMING, model), message, now)
            model = dict(fresh.members.items())
            assert effects == expected, step
        elif roll < 0.95:
            view, effects = v.tick(view, now)
            expected_kinds: list[tuple[str, str]] = []
            if not frozen:
                model, expected_kinds = brute_force_tick(model, now, TIMING)
            assert kinds_of(effects) == sorted(expected_kinds), step
        elif frozen:
            view, frozen = v.thaw(view, now), False
            model = {  # heard earlier by how much slower than ours it beats (thaw's doc)
                i: m
                if m.state in GONE
                else replace(
                    m,
                    heard=now
                    - max(m.record.interval - TIMING.interval, 0.0) * TIMING.suspect_intervals,
                )
                for i, m in model.items()
            }
        else:
            view, frozen = v.freeze(view, now), True
        assert dict(view.members.items()) == model, step
        by_service: dict[str, set[str]] = {}
        for m in model.values():
            by_service.setdefault(m.record.service, set()).add(m.instance)
        assert {s: set(i) for s, i in view.services.items()} == by_service, step
        if step % 50 == 0:
            kept.append((view, dict(model)))
    for old, then in kept:
        assert dict(old.members.items()) == then


def test_an_old_view_is_unchanged_by_the_steps_taken_from_it() -> None:
    before, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1), 0.0)
    snapshot = dict(before.members.items())
    after, _ = v.apply(before, beat("i1", seq=2), 0.5)
    after, _ = v.apply(after, heartbeat("i2", seq=1), 0.5)
    after, _ = v.tick(after, 10.0)
    assert dict(before.members.items()) == snapshot
    assert (before.members["i1"].seq, after.members["i1"].state) == (1, State.DOWN)
    assert "i2" not in before.members


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.ALIVE, [(2.9, "alive"), (3.0, "suspect"), (6.0, "down"), (66.0, "gone")]),
        (State.SUSPECT, [(5.9, "suspect"), (6.0, "down"), (65.9, "down"), (66.0, "gone")]),
        (State.DOWN, [(60.4, "down"), (60.5, "gone")]),
    ],
)
def test_a_member_stored_in_any_state_expires_from_there(
    state: State, expected: list[tuple[float, str]]
) -> None:
    """Whatever puts a member in a state (a message, a tick, or a fold of another kind)
    queues it for the next expiry of that state: a suspect is not left alive for ever."""
    m = Member(heartbeat("i1"), state, heard=0.0, since=0.5, seq=1)
    view = v.holding(LAN, {"i1": m})
    for now, shown in expected:
        view, _ = v.tick(view, now)
        member = view.members.get("i1")
        assert (now, member.state.value if member else "gone") == (now, shown)


def test_a_beat_keeps_the_record_it_does_not_repeat() -> None:
    """Liveness only: heard and seq move on, the record is the very object held."""
    view, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1, zone="z"), 0.0)
    record = view.members["i1"].record
    after, effects = v.apply(view, beat("i1", seq=2), 2.0)
    m = after.members["i1"]
    assert (m.record is record, m.heard, m.seq, m.since) == (True, 2.0, 2, 0.0)
    assert (effects, after.version) == ([], view.version)  # routing unchanged


def test_a_beat_after_a_gap_in_seq_says_what_it_missed_may_matter() -> None:
    """Seq 2 and 3 never came (a slow-consumer cut): one of them may have been a changed
    record, which the next periodic full record would bring only minutes later."""
    view, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1), 0.0)
    after, effects = v.apply(view, beat("i1", seq=4), 2.0)
    assert after.members["i1"].seq == 4
    assert effects == [v.Missed("orders")]


def test_a_beat_brings_a_silent_member_back_as_its_heartbeat_would() -> None:
    view, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1), 0.0)
    view, _ = v.tick(view, 3.0)
    assert view.members["i1"].state is State.SUSPECT
    after, effects = v.apply(view, beat("i1", seq=2), 3.5)
    assert after.members["i1"].state is State.ALIVE
    assert [(e.kind, e.detail) for e in effects if isinstance(e, v.Event)] == [
        ("instance.up", {"previous": "suspect"})
    ]
    assert (after.version, after.changed) == (view.version + 1, frozenset({"orders"}))


@pytest.mark.parametrize(
    ("message", "effects"),
    [
        # No record, no address: not a member; its nodes are asked for theirs.
        (beat("nobody", seq=2), [v.Dropped("unknown"), v.Missed("orders")]),
        # A restart not announced yet: asked for too.
        (beat("i1", incarnation=2, seq=1), [v.Dropped("incarnation"), v.Missed("orders")]),
        (beat("i1", incarnation=0, seq=9), [v.Dropped("stale")]),  # already replaced
        (beat("i1", seq=1), [v.Dropped("stale")]),
        (beat("i1", "billing", seq=2), [v.Dropped("conflict")]),  # another's id: no asking
    ],
)
def test_a_beat_of_a_record_not_held_changes_nothing(message: Any, effects: list[Any]) -> None:
    view, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1), 0.0)
    assert v.apply(view, message, 1.0) == (view, effects)


def test_a_beat_after_a_goodbye_is_stale() -> None:
    view, _ = v.apply(v.View(LAN), heartbeat("i1", seq=1), 0.0)
    view, _ = v.apply(view, leave("i1", seq=2), 0.5)
    assert v.apply(view, beat("i1", seq=3), 1.0) == (view, [v.Dropped("stale")])


def test_each_step_names_the_services_whose_routing_it_changed() -> None:
    view, _ = v.apply(v.View(LAN), heartbeat("a1", "a", seq=1), 0.0)
    view, _ = v.apply(view, heartbeat("b1", "b", seq=1, interval=0.5), 0.0)
    assert (view.version, view.changed) == (2, frozenset({"b"}))
    view, _ = v.apply(view, beat("a1", "a", seq=2), 1.0)
    assert (view.version, view.changed) == (2, frozenset({"b"}))  # unchanged with it
    view, _ = v.tick(view, 1.5)  # b1 (0.5 s interval) is suspect, a1 heard at 1.0 is not
    assert (view.version, view.changed) == (3, frozenset({"b"}))
    assert sorted(m.instance for m in view.of_service("b")) == ["b1"]
