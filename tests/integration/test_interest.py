"""An agent hears only the services it calls, at once on the first call, and lets idle ones go.

In-process agents (as their process composes them) on the module's own nats-server:
services a, b and c, and a caller `shop` whose bus counts every delivery by subject.
Heartbeats every 30 s: a first call that succeeds did not wait for one (the sync did it).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from waiting import until

from agents.agent import AgentOptions
from agents.agent import run as run_agent
from mesh import config, subjects
from mesh.bus import Delivery, Handler, NatsBus
from mesh.config import Settings
from mesh.forwarding.policy_feed import ensure_bucket
from mesh.messages import Sync, encode
from mesh.node.ports import free_port
from mesh.playground import demo
from mesh.playground.natsserver import NatsServer

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

IDLE = 0.6  # the caller's MESH_INTEREST_IDLE here
WAIT = 2.0  # its MESH_INTEREST_WAIT: generous on a loaded machine, and still < 30 s


class CountingBus(NatsBus):
    """The caller's bus: every delivery to any of its handlers, by subject."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.heard: list[str] = []
        self.dropped: dict[str, float] = {}  # subject -> when it was unsubscribed
        self._counted: dict[Handler, Handler] = {}

    def _counting(self, handler: Handler) -> Handler:
        if handler not in self._counted:

            async def counted(delivery: Delivery) -> None:
                self.heard.append(delivery.subject)
                await handler(delivery)

            self._counted[handler] = counted
        return self._counted[handler]

    async def subscribe(self, subject: str, handler: Handler) -> None:
        await super().subscribe(subject, self._counting(handler))

    async def unsubscribe(self, subject: str, handler: Handler) -> None:
        self.dropped[subject] = time.monotonic()
        await super().unsubscribe(subject, self._counting(handler))

    def count(self, kind: str, service: str) -> int:
        prefix = f"{subjects.PREFIX}.{kind}.{service}."
        return sum(subject.startswith(prefix) for subject in self.heard)


@dataclass
class Mesh:
    settings: Settings
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[object]] = field(default_factory=list)
    callers: list[CountingBus] = field(default_factory=list)

    def agent(self, service: str, name: str, *, outbound: str = "", **changes: object) -> None:
        settings = self.settings.model_copy(update=changes)
        port = free_port()
        self.tasks.append(
            asyncio.create_task(
                demo.serve(demo.DemoState(service, name), "127.0.0.1", port, self.stop)
            )
        )
        options = AgentOptions(
            service=service,
            port=port,
            host="127.0.0.1",
            health_path="/healthz",
            admin_port=0,
            instance_id=name,
            outbound=outbound,
        )
        self.tasks.append(asyncio.create_task(run_agent(settings, options, self.stop)))


@pytest.fixture
async def mesh(module_nats: NatsServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Mesh]:
    settings = config.load(
        nats_url=module_nats.url, heartbeat_interval=30.0, health_interval=0.2, policy_wait=1.0
    )
    running = Mesh(settings)

    def bus(settings: Settings, name: str) -> NatsBus:
        if not name.startswith("agent:shop:"):
            return NatsBus(settings, name)
        caller = CountingBus(settings, name)
        running.callers.append(caller)
        return caller

    monkeypatch.setattr("mesh.node.node.NatsBus", bus)
    setup = NatsBus(settings, "test-setup")
    await setup.start(wait=5)
    await ensure_bucket(setup)
    await setup.close()
    try:
        yield running
    finally:
        running.stop.set()
        await asyncio.wait_for(asyncio.gather(*running.tasks, return_exceptions=True), 15)


async def get(port: int, target: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def announced(nats_url: str, services: set[str]) -> None:
    """Until each service's agent has heartbeated healthy (their one heartbeat for 30 s)."""
    seen: set[str] = set()
    probe = NatsBus(config.load(nats_url=nats_url), "test-probe")
    await probe.start(wait=5)

    async def heard(delivery: Delivery) -> None:
        if b'"health":"passing"' in delivery.data:
            seen.add(delivery.subject.split(".")[3])

    await probe.subscribe(subjects.HEARTBEATS, heard)
    try:
        while not services <= seen:
            await probe.publish(subjects.SYNC, encode(Sync(node="test")))
            await asyncio.sleep(0.05)
    finally:
        await probe.close()


async def test_a_caller_hears_what_it_calls_at_once_and_never_the_rest(
    mesh: Mesh, module_nats: NatsServer
) -> None:
    for service in ("a", "b", "c"):
        mesh.agent(service, f"{service}-1")
    await asyncio.wait_for(announced(module_nats.url, {"a", "b", "c"}), 10)
    outbound = free_port()
    mesh.agent(
        "shop", "shop-1", outbound=f"127.0.0.1:{outbound}", interest_idle=IDLE, interest_wait=WAIT
    )
    await until(lambda: mesh.callers, 5)
    caller = mesh.callers[0]
    await until(lambda: _serving(outbound), 5)

    started = time.monotonic()
    assert await get(outbound, "http://a/") == 200  # a's record came with the sync
    first = time.monotonic() - started
    assert first < WAIT  # the sync's answer, not the next heartbeat (30 s away)
    assert await get(outbound, "http://b/") == 200
    # Everyone heartbeats now; the caller hears a's and b's, and never c's.
    before = caller.count("hb", "a")
    await asyncio.wait_for(announced(module_nats.url, {"a", "b", "c"}), 5)
    await until(lambda: caller.count("hb", "a") > before, 2)
    assert caller.count("hb", "b") >= 2
    assert caller.count("hb", "c") == 0
    assert caller.count("evidence", "c") == 0

    # Idle for MESH_INTEREST_IDLE: a is dropped, not before; a later call follows again.
    last_call = time.monotonic()
    assert await get(outbound, "http://a/") == 200
    hears_a = subjects.following("a")[0]
    await until(lambda: hears_a in caller.dropped, IDLE + 2)
    assert caller.dropped[hears_a] - last_call >= IDLE
    dropped = caller.count("hb", "a")
    await asyncio.wait_for(announced(module_nats.url, {"a", "b"}), 5)
    await asyncio.sleep(0.05)
    assert caller.count("hb", "a") == dropped
    assert await get(outbound, "http://a/") == 200
    assert caller.count("hb", "a") > dropped

    # No instance answered within the wait: unknown yet is not known absent (its records
    # may be late), so the call that followed it says 503, which a client may retry.
    assert await get(outbound, "http://nosuch/") == 503


def _serving(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
