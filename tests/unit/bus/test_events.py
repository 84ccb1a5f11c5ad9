"""The event log in process: stamping, order, outages and the bounded queue, on a memory bus."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from factories import event
from manual_clock import EPOCH, ManualClock
from memory_bus import MemoryBus, MemoryHub
from waiting import settle, until

from mesh import subjects
from mesh.bus import Delivery
from mesh.bus import events as events_module
from mesh.bus.events import EventLog
from mesh.errors import BusUnavailable
from mesh.messages import Event, decode
from mesh.metrics import Metrics


@dataclass
class Log:
    hub: MemoryHub
    bus: MemoryBus
    clock: ManualClock
    metrics: Metrics
    log: EventLog

    def stored(self) -> list[Event]:
        found = []
        for delivery in self.hub.published:
            message = decode(delivery.subject, delivery.data)
            assert isinstance(message, Event)
            assert delivery.subject == subjects.event(message.kind, message.service)
            assert delivery.headers == {"Nats-Msg-Id": message.id}  # JetStream de-duplicates
            found.append(message)
        return found

    def ids(self) -> list[str]:
        return [e.id for e in self.stored()]


class RefusingOnce(MemoryBus):
    """Connected, yet its next publish fails: NATS gone before the client noticed."""

    refuse = False

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        if self.refuse:
            self.refuse = False
            raise BusUnavailable("connection reset")
        await super().publish(subject, data, headers=headers)


@pytest.fixture
async def log() -> AsyncIterator[Log]:
    hub, clock, metrics = MemoryHub(), ManualClock(now=5.0), Metrics()
    bus = RefusingOnce(hub)
    hub.buses.append(bus)
    found = Log(hub, bus, clock, metrics, EventLog(bus, "node-1", metrics, clock=clock))
    found.log.start()
    yield found
    await found.log.close(timeout=0.1)


async def test_events_go_out_in_order_stamped_by_this_node_and_the_injected_clock(
    log: Log,
) -> None:
    log.log.emit(event(id="a"))
    log.clock.now += 1.5
    log.log.emit(event(id="b", kind="instance.down"))
    log.log.emit(event(id="c", node="other", at=42.0))  # stamped already: kept
    await until(lambda: len(log.stored()) == 3)
    assert [(e.id, e.node, e.at) for e in log.stored()] == [
        ("a", "node-1", EPOCH + 5.0),
        ("b", "node-1", EPOCH + 6.5),
        ("c", "other", 42.0),
    ]


async def test_an_outage_queues_events_and_the_reconnect_sends_them_in_order(log: Log) -> None:
    log.bus.set_connected(False)
    for name in "abc":
        log.log.emit(event(id=name))
    await settle()
    assert log.stored() == []
    log.bus.set_connected(True)
    await until(lambda: log.ids() == ["a", "b", "c"])


async def test_a_failed_publish_keeps_the_event_for_the_next_connection(log: Log) -> None:
    log.bus.refuse = True
    log.log.emit(event(id="a"))
    log.log.emit(event(id="b"))
    await settle()
    assert log.stored() == []  # neither lost nor sent out of order
    log.bus.set_connected(False)
    log.bus.set_connected(True)
    await until(lambda: log.ids() == ["a", "b"])


async def test_a_long_outage_drops_the_oldest_and_counts_them(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "QUEUE_LIMIT", 3)
    log.bus.set_connected(False)
    for name in "abcde":
        log.log.emit(event(id=name))
    assert log.metrics.events_dropped == 2
    log.bus.set_connected(True)
    await until(lambda: log.ids() == ["c", "d", "e"])


async def test_close_sends_what_is_queued_and_takes_nothing_observed_meanwhile(log: Log) -> None:
    async def observe_more(delivery: Delivery) -> None:
        if delivery.headers == {"Nats-Msg-Id": "a"}:
            log.log.emit(event(id="seen-while-stopping"))  # e.g. a tick of a stopping node

    await log.hub.bus().subscribe(subjects.EVENTS, observe_more)
    log.log.emit(event(id="a"))  # queued; the drain task has not run yet
    await log.log.close(timeout=1.0)
    assert log.ids() == ["a"]


async def test_close_without_nats_gives_up_and_says_how_many_were_lost(
    log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    log.bus.set_connected(False)
    log.log.emit(event(id="a"))
    log.log.emit(event(id="b"))
    with caplog.at_level(logging.WARNING, logger="mesh.bus.events"):
        await log.log.close(timeout=0.1)
    assert "2 events not published before stop" in caplog.text
    assert log.stored() == []


async def test_a_node_confined_to_its_own_service_publishes_only_its_events_and_acks() -> None:
    """With events_scope=own, nothing goes out that its credentials would refuse."""
    hub, clock, metrics = MemoryHub(), ManualClock(), Metrics()
    bus = hub.bus()
    own = EventLog(bus, "orders-1", metrics, own="orders", clock=clock)
    own.start()
    own.emit(event(id="mine", service="orders"))
    own.emit(event(id="theirs", service="billing", kind="instance.down"))
    own.emit(event(id="ack", service="billing", kind="policy.applied"))
    own.emit(event(id="nack", service="web-routes", kind="policy.rejected"))
    await own.close(timeout=0.5)
    sent = [decode(d.subject, d.data) for d in hub.published]
    assert [e.id for e in sent if isinstance(e, Event)] == ["mine", "ack", "nack"]
