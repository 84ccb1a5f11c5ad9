"""The announcer in process: what this node says on an in-memory bus, and when."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgspec
import pytest
from factories import heartbeat
from manual_clock import EPOCH, ManualClock
from memory_bus import MemoryBus, MemoryHub
from waiting import settle, until

from mesh import subjects
from mesh.errors import BusUnavailable
from mesh.membership.announcer import WAKE_GAP, Announcer
from mesh.messages import Beat, Gone, Heartbeat, Leave, Load, LoadReport, Sync, decode, encode

SLOW = 60.0  # an interval no test waits for: every heartbeat seen was sent on a cue


@dataclass
class Voice:
    hub: MemoryHub
    bus: MemoryBus
    announcer: Announcer

    def said(self) -> list[Heartbeat | Beat | Leave]:
        found = []
        for delivery in self.hub.published:
            if delivery.subject.split(".")[2] in ("hb", "leave"):
                message = decode(delivery.subject, delivery.data)
                assert isinstance(message, Heartbeat | Beat | Leave)
                found.append(message)
        return found

    def seqs(self) -> list[int]:
        return [message.seq for message in self.said()]

    def kinds(self) -> str:
        """F for a full record, b for a short beat, L for a leave."""
        return "".join({Heartbeat: "F", Beat: "b", Leave: "L"}[type(m)] for m in self.said())

    def reports(self) -> list[LoadReport]:
        found = []
        for delivery in self.hub.published:
            if delivery.subject == subjects.load("orders", "i1"):
                message = decode(delivery.subject, delivery.data)
                assert isinstance(message, LoadReport)
                found.append(message)
        return found


@pytest.fixture
async def voice() -> AsyncIterator[Callable[..., Voice]]:
    """`voice(interval=...)`: an announcer of orders/i1 started on a hub of its own."""
    started: list[Announcer] = []

    def make(
        interval: float = SLOW,
        full_every: int = 10,
        rng: random.Random | None = None,
        counted: list[str] | None = None,
    ) -> Voice:
        hub = MemoryHub()
        bus = hub.bus()
        record = heartbeat("i1", incarnation=0, seq=0, interval=interval, health="passing")
        announcer = Announcer(
            bus,
            record,
            full_every=full_every,
            clock=ManualClock(now=12.345),
            rng=rng,
            count_invalid=(counted if counted is not None else []).append,
        )
        started.append(announcer)
        return Voice(hub, bus, announcer)

    yield make
    for announcer in started:
        await announcer.leave(timeout=0.1)


async def test_the_first_heartbeat_goes_out_at_start_with_a_wall_clock_incarnation(
    voice: Callable[..., Voice],
) -> None:
    v = voice()
    await v.announcer.start()
    await until(lambda: v.said())
    [first] = v.said()
    assert v.hub.published[0].subject == subjects.heartbeat("orders", "i1")
    assert (first.incarnation, first.seq) == (int((EPOCH + 12.345) * 1000), 1)
    assert v.announcer.sent == 1


async def test_a_change_is_announced_at_once_in_full(voice: Callable[..., Voice]) -> None:
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    v.announcer.update(health="passing")  # no change at all
    await settle()
    assert v.seqs() == [1]
    v.announcer.update(health="failing")
    await until(lambda: v.seqs() == [1, 2])
    latest = v.said()[-1]
    assert isinstance(latest, Heartbeat)
    assert latest.health == "failing"


async def test_short_beats_between_full_records_every_nth_interval(
    voice: Callable[..., Voice],
) -> None:
    """The first is the announcement; then every third one is the full record again."""
    v = voice(interval=0.02, full_every=3)
    await v.announcer.start()
    # The count moves once a publish returns, a turn of the loop after the hub has it.
    await until(lambda: len(v.said()) >= 7 and v.announcer.full_sent >= 3, timeout=2.0)
    assert v.kinds()[:7] == "FbbFbbF"
    assert v.seqs()[:7] == [1, 2, 3, 4, 5, 6, 7]
    first, beat = v.said()[:2]
    assert isinstance(first, Heartbeat)
    assert isinstance(beat, Beat)
    assert (beat.service, beat.instance, beat.incarnation) == ("orders", "i1", first.incarnation)


async def test_a_sync_a_reconnect_and_a_change_each_get_the_full_record(
    voice: Callable[..., Voice],
) -> None:
    """Between them, beats would be short: these are the cues answered in full."""
    v = voice(full_every=1000)
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    await v.hub.bus().publish(subjects.SYNC, encode(Sync(node="late-gateway")))
    await until(lambda: v.seqs() == [1, 2])
    v.bus.set_connected(False)
    v.bus.set_connected(True)
    await until(lambda: v.seqs() == [1, 2, 3])
    v.announcer.update(weight=5)
    await until(lambda: v.seqs() == [1, 2, 3, 4])
    assert v.kinds() == "FFFF"


async def test_a_watcher_saying_we_are_gone_is_answered_with_the_full_record(
    voice: Callable[..., Voice],
) -> None:
    """Refuted at once: with slow beats, the next one could be half a minute away."""
    v = voice(full_every=1000)
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    ours = v.announcer.record.incarnation
    lie = Gone(service="orders", instance="i1", incarnation=ours, witness="gw")
    await v.hub.bus().publish(subjects.gone("orders", "i1"), encode(lie))
    await until(lambda: v.seqs() == [1, 2])
    earlier = msgspec.structs.replace(lie, incarnation=ours - 1)
    await v.hub.bus().publish(subjects.gone("orders", "i1"), encode(earlier))
    await v.hub.bus().publish(subjects.gone("orders", "other"), encode(lie))
    await settle()
    assert v.kinds() == "FF"  # an earlier incarnation's close is true; another's not ours


async def test_asks_and_gones_it_cannot_read_are_counted_and_answered_with_nothing(
    voice: Callable[..., Voice],
) -> None:
    counted: list[str] = []
    v = voice(full_every=1000, counted=counted)
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    asker = v.hub.bus()
    await asker.publish(subjects.SYNC, b"wake up")
    await asker.publish(
        subjects.sync("orders"), encode(Leave(service="o", instance="i", incarnation=1, seq=1))
    )
    await asker.publish(subjects.gone("orders", "i1"), b"{}")
    await settle()
    assert v.seqs() == [1]
    assert counted == ["sync", "sync", "gone"]


class Earliest(random.Random):
    """Every random phase at the start of its range."""

    def uniform(self, a: float, b: float) -> float:
        return a


async def test_a_new_pace_begins_at_a_random_point_of_its_interval(
    voice: Callable[..., Voice],
) -> None:
    """Nodes change pace together; a random first wait keeps them from beating in step.
    Here the phase is the earliest possible: the beat after the change comes at once,
    and the one after it a whole interval later."""
    v = voice(rng=Earliest())
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    v.announcer.update(interval=SLOW / 2)  # the change itself goes out in full, at once
    await until(lambda: v.seqs() == [1, 2, 3])
    await settle()
    assert v.seqs() == [1, 2, 3]


async def test_load_goes_on_its_own_subject_at_the_base_pace_and_once_after(
    voice: Callable[..., Voice],
) -> None:
    """Heartbeats carry no figures; a report goes beside each one, and every base
    interval between heartbeats slowed down (under presence), while there are figures;
    then one saying none, then nothing (an idle node costs watchers nothing)."""
    v = voice(interval=0.05)
    asked: list[float] = []
    busy_until = 6  # calls with figures

    def source(now: float) -> Load:
        asked.append(now)
        return Load(window=1.0, omitted=3) if len(asked) <= busy_until else Load(window=2.0)

    v.announcer.load_source = source
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    v.announcer.update(interval=SLOW)  # heartbeats slow down; reports do not
    await until(lambda: len(asked) >= busy_until + 3, timeout=2.0)
    reports = v.reports()
    assert [r.load.omitted for r in reports] == [3] * busy_until + [0]  # then nothing
    assert reports[-1].load.window == 2.0
    assert v.seqs() == [1, 2]  # the announcement and the pace change's full record
    first = v.said()[0]
    assert isinstance(first, Heartbeat)
    assert all(r.incarnation == first.incarnation for r in reports)
    assert asked[0] == 12.345  # the announcer's clock, monotonic side


async def test_a_sync_request_and_a_reconnect_are_answered_at_once(
    voice: Callable[..., Voice],
) -> None:
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    await v.hub.bus().publish(subjects.SYNC, encode(Sync(node="late-gateway")))
    await until(lambda: v.seqs() == [1, 2])
    v.bus.set_connected(False)
    v.announcer.update(health="failing")  # cannot go out now, and is not queued
    await settle()
    assert v.seqs() == [1, 2]
    v.bus.set_connected(True)
    await until(lambda: v.seqs() == [1, 2, 3])
    assert v.said()[-1].health == "failing"  # type: ignore[union-attr]


async def test_a_flood_of_syncs_is_answered_at_most_once_per_wake_gap(
    voice: Callable[..., Voice],
) -> None:
    """Any node may ask, and after a NATS node's loss every follower does at once: each
    node answers a burst with a record per WAKE_GAP, not one per request."""
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    asker = v.hub.bus()
    started = time.monotonic()
    for _ in range(200):
        await asker.publish(subjects.SYNC, encode(Sync(node="flood")))
        await asyncio.sleep(0)
    await until(lambda: v.kinds().count("F") >= 2)  # the burst was answered
    await asyncio.sleep(3 * WAKE_GAP)
    took = time.monotonic() - started
    assert v.kinds().count("F") <= 2 + took / WAKE_GAP  # the first, then one per gap


async def test_its_own_services_sync_is_answered_and_anothers_is_not(
    voice: Callable[..., Voice],
) -> None:
    """A node that starts following orders asks orders' nodes alone (mesh.v1.sync.orders)."""
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    asker = v.hub.bus()
    await asker.publish(subjects.sync("billing"), encode(Sync(node="caller")))
    await settle()
    assert v.seqs() == [1]
    await asker.publish(subjects.sync("orders"), encode(Sync(node="caller")))
    await until(lambda: v.seqs() == [1, 2])


async def test_heartbeats_repeat_every_interval(voice: Callable[..., Voice]) -> None:
    v = voice(interval=0.05)
    await v.announcer.start()
    await until(lambda: len(v.said()) >= 4, timeout=2.0)
    assert v.seqs()[:4] == [1, 2, 3, 4]


async def test_leave_follows_the_last_seq_once_and_silences_the_node(
    voice: Callable[..., Voice],
) -> None:
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    assert await v.announcer.leave("drain") is True
    last = v.said()[-1]
    assert isinstance(last, Leave)
    assert (last.seq, last.reason, last.incarnation) == (2, "drain", v.said()[0].incarnation)
    assert v.hub.published[-1].subject == subjects.leave("orders", "i1")
    assert await v.announcer.leave("shutdown") is True  # the first answer stands
    await v.hub.bus().publish(subjects.SYNC, encode(Sync(node="late-gateway")))
    await settle()
    assert v.seqs() == [1, 2]  # no second leave, no heartbeat after it


async def test_a_leave_nats_did_not_take_says_so(voice: Callable[..., Voice]) -> None:
    v = voice()
    await v.announcer.start()
    await until(lambda: v.seqs() == [1])
    v.bus.set_connected(False)
    assert await v.announcer.leave() is False
    v.bus.set_connected(True)
    assert await v.announcer.leave() is False
    assert v.seqs() == [1]


class LosesOne(MemoryBus):
    """Connected, but the first publish fails, as a connection lost on the way does."""

    lost = 0

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        if not self.lost:
            self.lost += 1
            raise BusUnavailable("connection lost")
        await super().publish(subject, data, headers=headers)


async def test_a_heartbeat_nats_did_not_take_gives_its_seq_to_the_next() -> None:
    """The others know they saw an incarnation start by its seq 1: it must be sent."""
    hub = MemoryHub()
    bus = LosesOne(hub)
    record = heartbeat("i1", incarnation=0, seq=0, interval=SLOW)
    announcer = Announcer(bus, record, clock=ManualClock())
    voice = Voice(hub, bus, announcer)
    await announcer.start()
    await settle()
    assert (bus.lost, voice.seqs()) == (1, [])
    bus.set_connected(False)
    bus.set_connected(True)  # a reconnect asks for a heartbeat at once
    await until(lambda: voice.seqs() == [1])
    assert voice.kinds() == "F"  # the announcement that did not go out is still owed
    await announcer.leave(timeout=0.1)
