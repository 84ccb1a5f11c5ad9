"""Discovery following only the services it wants: subscriptions, per-service syncs, idle drop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from factories import heartbeat
from manual_clock import ManualClock
from memory_bus import MemoryBus, MemoryHub
from waiting import until

from mesh import subjects
from mesh.bus import Delivery, Handler
from mesh.errors import BusUnavailable
from mesh.membership.discovery import Discovery
from mesh.messages import Heartbeat, Sync, decode, encode
from mesh.metrics import Metrics
from mesh.timing import PRESETS

IDLE = 600.0


@dataclass
class Caller:
    hub: MemoryHub
    bus: MemoryBus
    peer: MemoryBus
    clock: ManualClock
    discovery: Discovery

    async def send(self, hb: Heartbeat) -> None:
        await self.peer.publish(subjects.heartbeat(hb.service, hb.instance), encode(hb))

    def subscribed(self) -> set[str]:
        return {subject for subject, _ in self.bus.subscriptions}

    def syncs(self) -> list[str]:
        return [d.subject for d in self.hub.published if d.subject.startswith(subjects.SYNC)]


@pytest.fixture
async def caller() -> AsyncIterator[Caller]:
    hub = MemoryHub()
    bus, peer, clock = hub.bus(), hub.bus(), ManualClock()
    discovery = Discovery(
        bus,
        PRESETS["local"],
        node="shop-1",
        metrics=Metrics(),
        events=None,
        clock=clock,
        everything=False,
        idle=IDLE,
    )
    discovery.follow(lambda service: [subjects.evidence_about(service)], _ignore)
    found = Caller(hub, bus, peer, clock, discovery)
    await discovery.start()
    yield found
    await discovery.stop()


async def _ignore(delivery: Delivery) -> None:
    pass


async def test_it_starts_hearing_nothing_and_asks_nobody(caller: Caller) -> None:
    assert caller.subscribed() == set()
    assert caller.syncs() == []


async def test_want_subscribes_that_service_and_asks_its_nodes_alone(caller: Caller) -> None:
    await caller.discovery.want("orders")
    assert caller.subscribed() == {
        "mesh.v1.hb.orders.>",
        "mesh.v1.leave.orders.>",
        "mesh.v1.gone.orders.>",
        "mesh.v1.evidence.*.orders.>",
    }
    assert caller.syncs() == ["mesh.v1.sync.orders"]
    (asked,) = [d for d in caller.hub.published if d.subject == "mesh.v1.sync.orders"]
    assert decode(asked.subject, asked.data) == Sync(node="shop-1")
    assert caller.discovery.interested("orders")
    assert not caller.discovery.interested("billing")


async def test_concurrent_wants_share_one_subscription_and_one_sync(caller: Caller) -> None:
    await asyncio.gather(*(caller.discovery.want("orders") for _ in range(5)))
    await caller.discovery.want("orders")
    assert len(caller.bus.subscriptions) == len(subjects.FOLLOWED) + 1  # and evidence
    assert caller.syncs() == ["mesh.v1.sync.orders"]


async def test_only_wanted_services_reach_the_view(caller: Caller) -> None:
    await caller.discovery.want("orders")
    await caller.send(heartbeat("o1", "orders"))
    await caller.send(heartbeat("b1", "billing"))  # nobody here subscribed: never delivered
    assert set(caller.discovery.view.members) == {"o1"}


async def test_drop_unsubscribes_and_forgets_its_members_without_events(caller: Caller) -> None:
    changes: list[object] = []
    caller.discovery.on_change(changes.append)
    await caller.discovery.want("orders")
    await caller.send(heartbeat("o1", "orders"))
    await caller.discovery.drop("orders")
    assert caller.subscribed() == set()
    assert caller.discovery.view.members == {}
    await until(lambda: len(changes) == 2)  # the arrival, then the drop: routing forgets o1
    assert not caller.discovery.interested("orders")


async def test_a_straggler_of_a_dropped_service_is_not_folded(caller: Caller) -> None:
    """In flight when the subscription went: it would linger and then expire loudly."""
    await caller.discovery.want("orders")
    await caller.discovery.drop("orders")
    straggler = heartbeat("o1", "orders")
    await caller.discovery._deliver(  # as NATS may still deliver it
        Delivery(subjects.heartbeat("orders", "o1"), encode(straggler))
    )
    assert caller.discovery.view.members == {}


async def test_an_idle_service_is_dropped_and_a_pinned_one_is_not(caller: Caller) -> None:
    await caller.discovery.want("orders")
    await caller.discovery.pin(["billing"])
    assert caller.syncs() == ["mesh.v1.sync.orders", "mesh.v1.sync.billing"]
    caller.clock.now += IDLE - 1
    caller.discovery.used["orders"] = caller.clock.now  # a call, as the engine stamps it
    caller.clock.now += IDLE - 1
    await asyncio.sleep(0.12)  # two ticks (every 50 ms here): nothing is idle yet
    assert caller.discovery.interested("orders")
    caller.clock.now += 1
    await until(lambda: not caller.discovery.interested("orders"))
    assert caller.discovery.interested("billing")
    assert caller.subscribed() == {
        "mesh.v1.hb.billing.>",
        "mesh.v1.leave.billing.>",
        "mesh.v1.gone.billing.>",
        "mesh.v1.evidence.*.billing.>",
    }


async def test_a_first_call_waits_for_a_routable_member_and_no_longer(caller: Caller) -> None:
    waiting = asyncio.create_task(caller.discovery.first_call(["orders"], timeout=5))
    await until(lambda: caller.syncs() == ["mesh.v1.sync.orders"])
    await caller.send(heartbeat("o1", "orders", health="failing"))
    await asyncio.sleep(0.02)
    assert not waiting.done()  # not routable yet
    await caller.send(heartbeat("o1", "orders", seq=2, health="passing"))
    await asyncio.wait_for(waiting, 1)


async def test_a_first_call_gives_up_after_its_timeout(caller: Caller) -> None:
    started = asyncio.get_running_loop().time()
    await caller.discovery.first_call(["nosuch"], timeout=0.05)
    assert asyncio.get_running_loop().time() - started < 0.5
    assert caller.discovery.interested("nosuch")  # a later call answers at once


async def test_a_reconnect_asks_each_followed_service_again(caller: Caller) -> None:
    await caller.discovery.want("orders")
    caller.bus.set_connected(False)
    caller.bus.set_connected(True)
    await until(lambda: caller.syncs().count("mesh.v1.sync.orders") == 2)
    assert subjects.SYNC not in caller.syncs()


async def test_a_node_that_follows_everything_subscribes_wildcards_and_syncs_all() -> None:
    hub = MemoryHub()
    bus = hub.bus()
    discovery = Discovery(bus, PRESETS["local"], node="gw", metrics=Metrics(), events=None)
    discovery.follow(lambda service: [subjects.evidence_about(service)], _ignore)
    await discovery.start()
    try:
        assert {s for s, _ in bus.subscriptions} == {
            "mesh.v1.hb.*.>",
            "mesh.v1.leave.*.>",
            "mesh.v1.gone.*.>",
            "mesh.v1.evidence.*.*.>",
        }
        assert [d.subject for d in hub.published] == [subjects.SYNC]
        await discovery.want("orders")  # nothing more to do
        assert len(bus.subscriptions) == len(subjects.FOLLOWED) + 1
        assert discovery.interested("anything")
    finally:
        await discovery.stop()


class RefusingBus(MemoryBus):
    """Refuses one subscription (a connection going away mid-want), then takes them."""

    def __init__(self, hub: MemoryHub, refuse: str) -> None:
        super().__init__(hub)
        self.refuse = refuse

    async def subscribe(self, subject: str, handler: Handler) -> None:
        if subject == self.refuse:
            self.refuse = ""
            raise BusUnavailable("not connected to NATS")
        await super().subscribe(subject, handler)


async def test_a_want_that_could_not_subscribe_is_undone_and_tried_again() -> None:
    hub = MemoryHub()
    bus = RefusingBus(hub, refuse="mesh.v1.leave.orders.>")
    hub.buses.append(bus)
    discovery = Discovery(
        bus, PRESETS["local"], node="shop-1", metrics=Metrics(), events=None, everything=False
    )
    await discovery.start()
    try:
        await discovery.want("orders")
        assert not discovery.interested("orders")  # half-subscribed would be deaf for good
        assert bus.subscriptions == []
        await discovery.want("orders")
        assert {s for s, _ in bus.subscriptions} == {
            "mesh.v1.hb.orders.>",
            "mesh.v1.leave.orders.>",
            "mesh.v1.gone.orders.>",
        }
    finally:
        await discovery.stop()
