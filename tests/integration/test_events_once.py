"""Each happening once, stored and live, with two gateways and agents observing on real NATS.

In-process nodes (gateways and agents as their processes compose them, without HTTP
listeners) on the module's own nats-server, with the stream's duplicate window cut to
half a second: what is stored once here is stored once by the ids, not by the window.
Save arrivals told within the arrival grace, whose copies come up to the grace apart:
there the window is the grace's, as the settings require.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import msgspec
import nats
import pytest
from peers import Peer, record, start
from waiting import until

from mesh import clock, config, subjects
from mesh.bus import Delivery, NatsBus, setup
from mesh.bus.kv import KvStore
from mesh.config import Settings
from mesh.errors import BusError
from mesh.membership.view import State
from mesh.messages import Event, decode, encode
from mesh.node.node import Node
from mesh.observe.events import Printer, follow
from mesh.playground.natsserver import NatsServer
from mesh.resilience.outcome import REFUSED

WINDOW = 0.5  # the stream's duplicate window here: it must exceed the observers' spread
GREET = b"""{"kind": "Route", "name": "greet", "match": {"path_prefix": "/greet"},
            "to": [{"service": "hello"}]}"""


class Log:
    """The events a live follower of the stored stream received."""

    def __init__(self, settings: Settings) -> None:
        self.bus = NatsBus(settings, name="test-tail")
        self.live: list[Event] = []

    async def start(self) -> None:
        await self.bus.start(wait=5.0)
        await follow(self.bus, subjects.EVENTS, None, self._received)

    async def _received(self, delivery: Delivery) -> None:
        event = decode(delivery.subject, delivery.data)
        assert isinstance(event, Event)
        self.live.append(event)


async def stored_events(url: str) -> list[Event]:
    """Every event the stream holds, in order."""
    client = await nats.connect(url, connect_timeout=2)
    try:
        js = client.jetstream()
        last = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        found = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(subjects.EVENTS_STREAM, seq)
            event = decode(msg.subject, msg.data or b"")
            assert isinstance(event, Event)
            found.append(event)
        return found
    finally:
        await client.close()


def happenings(events: list[Event], start: int = 0) -> list[tuple[str, str, str]]:
    return [(e.kind, e.service, e.instance) for e in events[start:]]


@pytest.fixture
def settings(module_nats: NatsServer) -> Settings:
    return config.load(
        nats_url=module_nats.url,
        preset="local",  # down after 1.2 s of silence
        events_duplicate_window=WINDOW,
        # Arrivals only by first heartbeats here, so that who stores them is exact: the
        # grace, for nodes starting together, is the next test's.
        arrival_grace=0,
        outlier_base_ejection=0.3,
        policy_wait=2.0,
    )


async def test_each_happening_is_stored_and_followed_once(
    settings: Settings, module_nats: NatsServer
) -> None:
    await setup.set_up(settings)
    log = Log(settings)
    await log.start()
    peers: list[Peer] = []

    async def joined(service: str, instance: str, port: int) -> Peer:
        peer = await start(settings, service, instance, port)
        peers.append(peer)
        return peer

    def everyone(check: Callable[[Peer], bool]) -> Callable[[], bool]:
        return lambda: all(check(p) for p in peers if p.node.bus.connected)

    async def stored_since(mark: int, expected: list[tuple[str, str, str]]) -> int:
        """Wait for `expected` (in any order) after the first `mark` stored; the new mark."""
        expected = sorted(expected)
        deadline = time.monotonic() + 3.0
        while True:
            now_stored = await stored_events(module_nats.url)
            if sorted(happenings(now_stored, mark)) == expected:
                await asyncio.sleep(0.1)  # a late copy would be stored by now
                again = await stored_events(module_nats.url)
                assert sorted(happenings(again, mark)) == expected
                return len(again)
            assert time.monotonic() < deadline, happenings(now_stored, mark)
            await asyncio.sleep(0.05)

    try:
        # Started one after another: each start is seen by the nodes already there (the
        # first node's by nobody: no node was there to see it happen).
        gw1 = await joined("gateway", "gw-1", 1)
        gw2 = await joined("gateway", "gw-2", 1)
        hello1 = await joined("hello", "hello-1", 9001)
        hello2 = await joined("hello", "hello-2", 9002)
        hello3 = await joined("hello", "hello-3", 9003)
        mark = await stored_since(
            0,
            [("instance.up", "gateway", "gw-2")]
            + [("instance.up", "hello", f"hello-{n}") for n in (1, 2, 3)],
        )

        # Killed: its connection drops without a goodbye; the others see it go silent.
        # Meanwhile hello-1 drains (every node, itself too, sees the draining heartbeat),
        # and a revision comes that every live node applies, and one that each refuses.
        await hello2.node.bus.close()
        hello1.node.announcer.update(draining=True)
        kv = KvStore(log.bus, subjects.POLICY_BUCKET)
        await kv.open()
        await kv.put("route.greet", GREET, expected_revision=0)
        await kv.put("route.broken", b"not json", expected_revision=0)
        await until(everyone(lambda p: p.sees("hello-2", State.DOWN)), timeout=3.0)
        live = [p.name for p in peers if p is not hello2]
        mark = await stored_since(
            mark,
            [("instance.suspect", "hello", "hello-2"), ("instance.down", "hello", "hello-2")]
            + [("instance.draining", "hello", "hello-1")]
            + [("policy.applied", "greet", n) for n in live]
            + [("policy.rejected", "broken", n) for n in live],
        )

        # Restarted under the same instance id: a higher incarnation, which answers the
        # policies as it starts.
        await hello2.stop()
        peers.remove(hello2)
        hello2 = await joined("hello", "hello-2", 9002)
        mark = await stored_since(
            mark,
            [
                ("instance.restarted", "hello", "hello-2"),
                ("policy.applied", "greet", "hello-2"),
                ("policy.rejected", "broken", "hello-2"),
            ],
        )

        # gw-1's connection to hello-2 is refused: gw-1 ejects it and tells the mesh;
        # the others eject it on gw-1's word. Each node lets it back after 0.3 s.
        directory = gw1.forwarding.directory
        state = directory.state("hello")
        assert state is not None
        endpoint = directory.pick(state, random.Random(1), clock.monotonic(), (), {"hello-3"}, None)
        assert endpoint.instance == "hello-2"
        directory.observe(state, endpoint, REFUSED, clock.monotonic())
        ejected = lambda p: p.forwarding.directory.ejected_counts().get("hello") == 1  # noqa: E731
        await until(lambda: all(ejected(p) for p in (gw1, gw2, hello3)))
        mark = await stored_since(mark, [("instance.ejected", "hello", "hello-2")])
        hello3.node.announcer.update(health="failing")  # meanwhile, a check fails
        await asyncio.sleep(0.35)
        for peer in peers:
            peer.forwarding.engine.sweep()
        mark = await stored_since(
            mark,
            [("instance.restored", "hello", "hello-2"), ("health.failing", "hello", "hello-3")],
        )

        # A gateway starting later than the duplicate window stores its own start (seen
        # by the others) and its answers to the policies, nothing about instances that
        # were up, draining or failing before it came.
        await asyncio.sleep(WINDOW + 0.1)
        gw3 = await joined("gateway", "gw-3", 1)
        await until(lambda: len(gw3.node.view.members) == len(peers))
        mark = await stored_since(
            mark,
            [
                ("instance.up", "gateway", "gw-3"),
                ("policy.applied", "greet", "gw-3"),
                ("policy.rejected", "broken", "gw-3"),
            ],
        )

        # Said goodbye: one instance.left.
        await hello3.stop()
        peers.remove(hello3)
        mark = await stored_since(mark, [("instance.left", "hello", "hello-3")])

        stored = await stored_events(module_nats.url)
        ids = [e.id for e in stored]
        assert len(set(ids)) == len(ids)
        # Live: the follower got exactly what was stored, in the same order.
        await until(lambda: len(log.live) >= len(stored))
        assert [e.id for e in log.live] == ids
    finally:
        for peer in peers:
            await peer.stop()
        await log.bus.close()


async def test_nodes_started_together_store_every_arrival_once(module_nats: NatsServer) -> None:
    """As `mesh up --secure` starts them: agents one after another, each missing the first
    heartbeats of those before it and telling only its own service's events; gateway
    workers ready last, seeing everyone at a later heartbeat. Within the arrival grace
    each tells what it missed, and every arrival is stored once, the first node's too."""
    grace = 5.0  # in-process nodes start within a second of one another, even loaded
    settings = config.load(
        nats_url=module_nats.url,
        preset="local",
        arrival_grace=grace,
        events_duplicate_window=grace + 0.5,  # copies come up to the grace apart
    )
    await setup.set_up(settings)
    mark = len(await stored_events(module_nats.url))
    agents = [("hello", "up-hello-1"), ("hello", "up-hello-2"), ("frontend", "up-frontend-1")]
    gateways = [("gateway", "up-gateway-w0"), ("gateway", "up-gateway-w1")]
    nodes: list[Node] = []
    try:
        for service, instance in agents + gateways:
            scope = "all" if service == "gateway" else "own"
            own = settings.model_copy(update={"events_scope": scope})
            nodes.append(Node(own, record(own, service, instance, 1)))
            await nodes[-1].start()
        expected = sorted(("instance.up", s, i) for s, i in agents + gateways)
        await until(lambda: len(nodes[-1].view.members) == len(nodes))
        deadline = time.monotonic() + 3.0
        while sorted(happenings(await stored_events(module_nats.url), mark)) != expected:
            assert time.monotonic() < deadline, happenings(
                await stored_events(module_nats.url), mark
            )
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # a late copy would be stored by now
        stored = (await stored_events(module_nats.url))[mark:]
        assert sorted(happenings(stored)) == expected
        assert {e.id for e in stored} == {
            f"arrival:{n.service}:{n.name}:{n.announcer.record.incarnation}" for n in nodes
        }
    finally:
        for node in nodes:
            await node.stop()


def test_without_jetstream_the_tail_follows_the_subject_and_folds_copies(
    nats_binary: str, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = NatsServer(nats_binary, store_dir=tmp_path_factory.mktemp("no-js"), jetstream=False)
    server.start()
    try:
        asyncio.run(_three_copies_of_two_events(server.url))
    finally:
        server.stop()
    captured = capsys.readouterr()
    assert "following mesh.v1.events.>" in captured.err
    lines = captured.out.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["instance.down", "hello/hello-1"],
        ["instance.down", "hello/hello-2"],
    ]


async def _three_copies_of_two_events(url: str) -> None:
    settings = config.load(nats_url=url)
    bus = NatsBus(settings, name="test-tail")
    await bus.start(wait=5.0)
    try:
        # A replay needs the stream: asked for one, the tail says why it cannot.
        with pytest.raises(BusError, match="JetStream is unavailable"):
            await follow(bus, subjects.EVENTS, time.time() - 60, Printer(since=0, as_json=False))
        await follow(bus, subjects.EVENTS, None, Printer(since=None, as_json=False))
        client = await nats.connect(url, connect_timeout=2)
        for instance in ("hello-1", "hello-2"):
            event = Event(
                id=f"instance.down:hello:{instance}:1:9",
                kind="instance.down",
                service="hello",
                instance=instance,
                at=time.time(),
            )
            for node in ("gw-1", "gw-2", "hello-3"):  # each observer sends its copy
                copy = msgspec.structs.replace(event, node=node)
                await client.publish(subjects.event("instance.down", "hello"), encode(copy))
        await client.flush()
        await client.close()
        await asyncio.sleep(0.2)
    finally:
        await bus.close()
