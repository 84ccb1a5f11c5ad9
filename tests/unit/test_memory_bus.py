"""memory_bus: the in-memory twin of the NATS bus that the shells' unit tests use."""

from __future__ import annotations

import inspect

import pytest
from memory_bus import MemoryBus, MemoryHub

from mesh.bus import Bus, Delivery
from mesh.errors import BusTimeout, BusUnavailable


class Inbox:
    """A subscription handler that records what it receives."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    @property
    def subjects(self) -> list[str]:
        return [d.subject for d in self.got]


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub()


def test_memory_bus_has_every_member_of_the_bus_protocol_with_its_signature() -> None:
    # mypy does not read the tests: the twin is held to the protocol here.
    members = [name for name in vars(Bus) if not name.startswith("_")]
    assert {"publish", "subscribe", "wait_connected", "connected"} <= set(members)
    for name in members:
        wanted, got = getattr(Bus, name), getattr(MemoryBus, name, None)
        assert got is not None, name
        if isinstance(wanted, property):
            assert isinstance(got, property), name
        else:
            assert inspect.signature(got) == inspect.signature(wanted), name
            assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(wanted), name


@pytest.mark.parametrize(
    ("pattern", "delivered"),
    [
        ("mesh.v1.hb.orders.i1", True),
        ("mesh.v1.hb.*.i1", True),
        ("mesh.v1.hb.orders.*", True),
        ("mesh.v1.hb.>", True),
        ("mesh.>", True),
        (">", True),
        ("mesh.v1.hb.*", False),
        ("mesh.v1.hb.orders.i2", False),
        ("mesh.v1.leave.>", False),
        ("mesh.v1.hb.orders.i1.x", False),
    ],
)
async def test_publish_reaches_matching_subscribers_on_other_buses(
    hub: MemoryHub, pattern: str, delivered: bool
) -> None:
    sender, receiver = hub.bus(), hub.bus()
    inbox = Inbox()
    await receiver.subscribe(pattern, inbox)
    await sender.publish("mesh.v1.hb.orders.i1", b"payload", headers={"Nats-Msg-Id": "x"})
    expected = [Delivery("mesh.v1.hb.orders.i1", b"payload", "", {"Nats-Msg-Id": "x"})]
    assert inbox.got == (expected if delivered else [])
    assert hub.published == expected  # recorded whether or not anyone listened


async def test_a_bus_hears_its_own_publications_and_each_subscription_once(
    hub: MemoryHub,
) -> None:
    bus = hub.bus()
    a, b = Inbox(), Inbox()
    await bus.subscribe("mesh.v1.hb.>", a)
    await bus.subscribe("mesh.v1.*.orders.i1", b)
    await bus.publish("mesh.v1.hb.orders.i1", b"1")
    await bus.publish("mesh.v1.leave.orders.i1", b"2")
    assert (a.subjects, b.subjects) == (
        ["mesh.v1.hb.orders.i1"],
        ["mesh.v1.hb.orders.i1", "mesh.v1.leave.orders.i1"],
    )


async def test_disconnect_notifies_listeners_and_refuses_to_publish(hub: MemoryHub) -> None:
    bus = hub.bus()
    states: list[bool] = []
    bus.on_state(states.append)
    bus.set_connected(False)
    bus.set_connected(False)  # no change, no notification
    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await bus.publish("a.b", b"")
    with pytest.raises(BusUnavailable):
        await bus.request("a.b", b"", timeout=1.0)
    with pytest.raises(BusUnavailable):
        await bus.flush(1.0)
    bus.set_connected(True)
    await bus.publish("a.b", b"")
    await bus.flush(1.0)
    assert states == [False, True]
    assert [d.subject for d in hub.published] == ["a.b"]


async def test_a_disconnected_bus_misses_messages_and_hears_again_after_reconnect(
    hub: MemoryHub,
) -> None:
    sender, receiver = hub.bus(), hub.bus()
    inbox = Inbox()
    await receiver.subscribe("x.>", inbox)
    receiver.set_connected(False)
    await sender.publish("x.1", b"")
    receiver.set_connected(True)  # subscriptions survive the outage, as NatsBus resubscribes
    await sender.publish("x.2", b"")
    assert inbox.subjects == ["x.2"]


async def test_request_reply(hub: MemoryHub) -> None:
    client, server = hub.bus(), hub.bus()

    async def echo(delivery: Delivery) -> None:
        assert delivery.reply.startswith("_INBOX.")
        await server.publish(delivery.reply, delivery.data.upper())

    await server.subscribe("svc.echo", echo)
    assert await client.request("svc.echo", b"ping", timeout=1.0) == b"PING"
    assert await client.request("svc.echo", b"again", timeout=1.0) == b"AGAIN"
    assert client.subscriptions == []  # the reply inbox is gone afterwards


async def test_first_reply_wins(hub: MemoryHub) -> None:
    client = hub.bus()
    for answer in (b"first", b"second"):
        server = hub.bus()

        async def reply(
            delivery: Delivery, server: MemoryBus = server, answer: bytes = answer
        ) -> None:
            await server.publish(delivery.reply, answer)

        await server.subscribe("svc.who", reply)
    assert await client.request("svc.who", b"", timeout=1.0) == b"first"


async def test_request_times_out_when_responders_stay_silent(hub: MemoryHub) -> None:
    client, server = hub.bus(), hub.bus()
    await server.subscribe("svc.silent", Inbox())
    with pytest.raises(BusTimeout, match=r"svc\.silent"):
        await client.request("svc.silent", b"", timeout=0.01)
    assert client.subscriptions == []


async def test_request_without_responders_is_unavailable(hub: MemoryHub) -> None:
    client = hub.bus()
    with pytest.raises(BusUnavailable, match="no responders"):
        await client.request("svc.nobody", b"", timeout=1.0)
    assert client.subscriptions == []


async def test_a_disconnected_responder_does_not_count(hub: MemoryHub) -> None:
    client, server = hub.bus(), hub.bus()
    await server.subscribe("svc.x", Inbox())
    server.set_connected(False)
    with pytest.raises(BusUnavailable, match="no responders"):
        await client.request("svc.x", b"", timeout=1.0)


async def test_close_detaches_from_the_hub(hub: MemoryHub) -> None:
    sender, receiver = hub.bus(), hub.bus()
    inbox = Inbox()
    await receiver.subscribe(">", inbox)
    await receiver.close()
    assert hub.buses == [sender]
    assert not receiver.connected
    await sender.publish("a", b"")
    assert inbox.got == []
    with pytest.raises(BusUnavailable):
        await receiver.publish("a", b"")
