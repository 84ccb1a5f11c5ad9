"""Discovery in process: the view fed from an in-memory bus, expired on an injected clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
from factories import beat, heartbeat, leave
from manual_clock import EPOCH, ManualClock
from memory_bus import MemoryBus, MemoryHub
from waiting import settle, until

from mesh import subjects
from mesh.bus import Delivery
from mesh.bus.events import EventLog
from mesh.membership.discovery import ASK_AGAIN_EVERY, Discovery
from mesh.membership.view import State, View
from mesh.messages import Beat, Event, Heartbeat, Leave, Sync, decode, encode
from mesh.metrics import Metrics
from mesh.timing import PRESETS

# The observer ticks every 50 ms of real time; silence is read on the manual clock, in
# the sender's advertised interval (1 s: suspect after 3 s, down after 6 s).
LOCAL = PRESETS["local"]


async def two_ticks() -> None:
    """Real time for the ticker to run twice: whatever is due on the manual clock happens."""
    await asyncio.sleep(0.12)


@dataclass
class Observer:
    hub: MemoryHub
    bus: MemoryBus  # the observer's own connection
    peer: MemoryBus  # everyone else
    clock: ManualClock
    metrics: Metrics
    discovery: Discovery
    changes: list[View] = field(default_factory=list)

    async def send(self, message: Heartbeat | Beat | Leave) -> None:
        subject = (subjects.leave if isinstance(message, Leave) else subjects.heartbeat)(
            message.service, message.instance
        )
        await self.peer.publish(subject, encode(message))

    def state(self, instance: str = "i1") -> State:
        return self.discovery.view.members[instance].state

    def published(self, prefix: str) -> list[object]:
        return [
            decode(d.subject, d.data) for d in self.hub.published if d.subject.startswith(prefix)
        ]

    def events(self) -> list[Event]:
        return [e for e in self.published(f"{subjects.PREFIX}.events.") if isinstance(e, Event)]


@pytest.fixture
async def observer() -> AsyncIterator[Observer]:
    hub = MemoryHub()
    bus, peer, clock, metrics = hub.bus(), hub.bus(), ManualClock(), Metrics()
    events = EventLog(bus, "obs", metrics, clock=clock)
    discovery = Discovery(bus, LOCAL, node="obs", metrics=metrics, events=events, clock=clock)
    found = Observer(hub, bus, peer, clock, metrics, discovery)
    discovery.on_change(found.changes.append)
    events.start()
    yield found
    await discovery.stop()
    await events.close(timeout=0.1)


async def test_start_asks_every_node_for_its_heartbeat(observer: Observer) -> None:
    await observer.discovery.start()
    assert observer.published(subjects.SYNC) == [Sync(node="obs")]


async def test_heartbeats_join_the_view_and_only_routing_changes_reach_listeners(
    observer: Observer,
) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", seq=1, health="passing"))
    assert observer.state() is State.ALIVE
    assert observer.discovery.view.members["i1"].heard == observer.clock.now
    await observer.send(heartbeat("i1", seq=2, health="passing"))  # nothing routing reads
    await observer.send(heartbeat("i1", seq=3, health="failing"))
    assert [view.members["i1"].record.seq for view in observer.changes] == [1, 3]
    await until(lambda: len(observer.events()) == 2)
    up, failing = observer.events()
    assert (up.kind, failing.kind) == ("instance.up", "health.failing")
    assert (up.node, up.at) == ("obs", EPOCH + observer.clock.now)  # stamped by the log


async def test_changes_read_in_one_turn_of_the_loop_reach_listeners_once(
    observer: Observer,
) -> None:
    """A burst (a sync's answers) costs each listener one look, naming every service the
    burst touched since the version it saw last, so that the directory rebuilds those."""
    await observer.discovery.start()
    await observer.send(heartbeat("a1", service="alpha"))
    [seen] = observer.changes
    burst = [heartbeat("b1", service="beta"), heartbeat("c1", service="gamma")]
    burst += [heartbeat("b2", service="beta"), leave("a1", service="alpha")]
    for message in burst:  # as nats-py hands over what one read brought: no turn between
        subject = (subjects.leave if isinstance(message, Leave) else subjects.heartbeat)(
            message.service, message.instance
        )
        await observer.discovery._deliver(Delivery(subject, encode(message), "", None))
    assert len(observer.changes) == 1  # nothing told yet
    await asyncio.sleep(0)
    [_, told] = observer.changes
    assert told.version == seen.version + 4
    assert (told.changed, told.changed_since) == ({"alpha", "beta", "gamma"}, seen.version)
    assert told.members.keys() == {"a1", "b1", "b2", "c1"}  # a1 a tombstone


async def test_a_young_incarnation_first_seen_late_is_told_by_the_wall_clock(
    observer: Observer,
) -> None:
    """Discovery reads its wall clock: an instance started a second ago, first heard at
    seq 7 (its first heartbeats went out before this node listened), is announced; one
    started an hour ago is not."""
    await observer.discovery.start()
    started = int((EPOCH + observer.clock.now - 1.0) * 1000)
    await observer.send(heartbeat("young", seq=7, incarnation=started))
    await observer.send(heartbeat("old", seq=7, incarnation=started - 3_600_000))
    await observer.send(heartbeat("old", seq=8, incarnation=started - 3_600_000, weight=2))
    await until(lambda: observer.discovery.view.members["old"].seq == 8)
    await until(lambda: len(observer.events()) == 1)
    (up,) = observer.events()
    assert (up.kind, up.instance, up.id) == (
        "instance.up",
        "young",
        f"arrival:orders:young:{started}",
    )


async def test_a_node_leaves_its_own_arrival_to_the_nodes_already_there(
    observer: Observer,
) -> None:
    """It cannot tell its restart (instance.restarted to the others) from a first start,
    and its copy, the first out, would be the one stored: restarts would read as starts."""
    await observer.discovery.start()
    await observer.send(heartbeat("obs", "gateway", seq=1, health="failing"))
    await observer.send(heartbeat("obs", "gateway", seq=2, health="failing", draining=True))
    await until(lambda: len(observer.events()) == 2)
    assert [e.kind for e in observer.events()] == ["health.failing", "instance.draining"]
    assert observer.discovery.view.members["obs"].state is State.DRAINING


async def test_silence_on_the_injected_clock_makes_a_member_suspect_then_down(
    observer: Observer,
) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", interval=1.0))
    observer.clock.now += 2.9
    await two_ticks()  # nothing is due yet
    assert observer.state() is State.ALIVE
    observer.clock.now += 0.2
    await until(lambda: observer.state() is State.SUSPECT)
    observer.clock.now += 3.0
    await until(lambda: observer.state() is State.DOWN)
    await until(lambda: len(observer.events()) == 3)
    assert [e.kind for e in observer.events()] == [
        "instance.up",
        "instance.suspect",
        "instance.down",
    ]
    assert [v.members["i1"].state for v in observer.changes] == [
        State.ALIVE,
        State.SUSPECT,
        State.DOWN,
    ]


async def test_a_leave_takes_the_member_out_at_once(observer: Observer) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", seq=1))
    await observer.send(leave("i1", seq=2))
    assert observer.state() is State.LEFT
    assert observer.changes[-1].members["i1"].state is State.LEFT


async def test_invalid_and_stale_messages_are_counted_and_change_nothing(
    observer: Observer,
) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", seq=5))
    before = observer.discovery.view
    await observer.peer.publish(subjects.heartbeat("orders", "i1"), b"{not json")
    # A heartbeat must name the instance of its subject.
    await observer.peer.publish(subjects.heartbeat("orders", "i2"), encode(heartbeat("i1")))
    # ... and a leave its subject's: credentials for i2 (or billing) cannot make i1 leave.
    await observer.peer.publish(subjects.leave("orders", "i2"), encode(leave("i1", seq=9)))
    await observer.peer.publish(subjects.leave("billing", "i1"), encode(leave("i1", seq=9)))
    # Short beats are held to the same: their subject's instance, a seq that is a count.
    await observer.peer.publish(subjects.heartbeat("orders", "i2"), encode(beat("i1", seq=6)))
    negative = msgspec.to_builtins(beat("i1", seq=6)) | {"seq": -1}
    await observer.peer.publish(subjects.heartbeat("orders", "i1"), json.dumps(negative).encode())
    await observer.send(heartbeat("i1", seq=4))  # older than what we have
    await observer.send(beat("i1", seq=5))  # not newer either
    await observer.send(leave("nobody"))
    # A beat of a record this view does not hold cannot make a member (no address).
    await observer.send(beat("nobody", seq=6))
    await observer.send(beat("i1", incarnation=2, seq=1))  # a restart not announced yet
    assert observer.metrics.bus_invalid == {"hb": 4, "leave": 2}
    assert observer.metrics.view_dropped == {"stale": 2, "unknown": 2, "incarnation": 1}
    assert observer.discovery.view is before
    assert len(observer.changes) == 1


async def test_while_nats_is_away_nothing_expires_and_the_return_gives_a_full_period(
    observer: Observer,
) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", interval=1.0))
    observer.clock.now += 1.0
    observer.bus.set_connected(False)
    observer.clock.now += 60.0  # far beyond the down time: silence says nothing now
    await two_ticks()
    assert observer.state() is State.ALIVE
    syncs = len(observer.published(subjects.SYNC))
    observer.bus.set_connected(True)
    await until(lambda: len(observer.published(subjects.SYNC)) == syncs + 1)
    # A full suspect period counted from the reconnect, at our own pace (0.2 s beats) at
    # most: a member's slower one (1 s) is trusted again once it answers the sync.
    observer.clock.now += 0.5
    await two_ticks()
    assert observer.state() is State.ALIVE
    observer.clock.now += 0.2
    await until(lambda: observer.state() is State.SUSPECT)


async def test_expiries_due_when_nats_goes_away_are_settled_before_the_freeze(
    observer: Observer,
) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", interval=1.0))
    observer.clock.now += 3.5  # suspect is due; no tick has run since
    observer.bus.set_connected(False)
    assert observer.state() is State.SUSPECT
    assert observer.discovery.view.frozen_at == observer.clock.now


async def test_started_without_nats_the_view_is_frozen_from_the_start(observer: Observer) -> None:
    observer.bus.set_connected(False)
    await observer.discovery.start()
    assert observer.discovery.view.frozen_at == observer.clock.now
    assert observer.published(subjects.SYNC) == []


async def test_stop_ends_the_ticking(observer: Observer) -> None:
    await observer.discovery.start()
    await observer.send(heartbeat("i1", interval=1.0))
    await observer.discovery.stop()
    observer.clock.now += 10.0
    await two_ticks()
    assert observer.state() is State.ALIVE


async def test_settled_returns_once_the_view_has_been_still_for_a_while(
    observer: Observer,
) -> None:
    """A gateway serves once the answers to its start's sync are in, not before."""
    await observer.discovery.start()
    loop = asyncio.get_running_loop()

    async def answers() -> None:
        for n in range(5):  # one every 40 ms: never 100 ms of quiet until the last
            await observer.send(heartbeat(f"a{n}"))
            await asyncio.sleep(0.04)

    began = loop.time()
    feeding = asyncio.create_task(answers())
    await observer.discovery.settled(quiet=0.1, most=2.0)
    took = loop.time() - began
    await feeding
    assert len(observer.discovery.view.members) == 5
    assert 0.25 <= took < 1.0
    observer.bus.set_connected(False)
    began = loop.time()
    await observer.discovery.settled(quiet=0.1, most=2.0)  # away: nothing will come
    assert loop.time() - began < 0.05


async def test_a_beat_of_a_record_never_held_asks_its_service_once_in_a_while(
    observer: Observer,
) -> None:
    """Under presence the next full record is minutes away: a beat that says a record was
    missed makes this node ask that service's nodes at once, at most every few seconds."""
    await observer.discovery.start()
    asked = subjects.sync("orders")
    await observer.send(beat("i9", seq=5))  # a record this view never held
    await until(lambda: [d for d in observer.hub.published if d.subject == asked])
    await observer.send(beat("i9", seq=6))
    await settle()
    assert len([d for d in observer.hub.published if d.subject == asked]) == 1
    assert observer.discovery.asked_again == 1
    observer.clock.now += ASK_AGAIN_EVERY
    await observer.send(beat("i9", seq=7))
    await until(lambda: len([d for d in observer.hub.published if d.subject == asked]) == 2)
