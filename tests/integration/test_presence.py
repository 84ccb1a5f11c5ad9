"""Presence on a real nats-server: a killed agent is suspect at once, without any traffic
or heartbeat silence; a connection that claims what the view does not know changes nothing."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from memory_bus import MemoryHub
from mesh_procs import Mesh
from waiting import until

from mesh import config, subjects
from mesh.errors import BusRefused, ConfigError
from mesh.membership.presence import Presence
from mesh.membership.view import State
from mesh.messages import Event, Heartbeat, decode, encode
from mesh.metrics import Metrics
from mesh.node.node import Node
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer

# Heartbeats so rare that silence cannot explain a suspect within the test: 10 s between
# them, suspect after 3 silent intervals.
SILENT_FOR = 30.0
QUICK = 1.0  # the bound on presence's detection, generous for a loaded machine


@pytest.fixture
async def observer(presence_nats: NatsServer) -> AsyncIterator[Node]:
    """A gateway node in this process, holding the presence watcher."""
    assert presence_nats.accounts is not None
    env = presence_nats.accounts.presence_env()
    settings = config.Settings(
        nats_url=presence_nats.url,
        preset="local",
        presence_user=env["MESH_PRESENCE_USER"],
        presence_password=env["MESH_PRESENCE_PASSWORD"],  # type: ignore[arg-type]
    )
    record = Heartbeat(
        service="gateway", instance="gw-1", role="gateway", host="127.0.0.1", port=1,
        incarnation=0, seq=0, interval=settings.timing.interval,
    )  # fmt: skip
    node = Node(settings, record)
    await node.start()
    yield node
    await node.stop()


async def test_a_killed_agent_is_suspect_at_once_with_no_traffic(
    presence_nats: NatsServer, observer: Node, tmp_path: Path
) -> None:
    # A second node that only listens: its view gets the news from the watcher's `gone`.
    listener = await nats.connect(presence_nats.url)
    suspects: list[Event] = []

    async def hear(msg: nats.aio.msg.Msg) -> None:
        event = decode(msg.subject, msg.data)
        assert isinstance(event, Event)
        suspects.append(event)

    await listener.subscribe(subjects.event("instance.suspect", "hello"), cb=hear)
    mesh = Mesh(presence_nats.url, tmp_path, env={"MESH_HEARTBEAT_INTERVAL": "10"})
    try:
        agent = mesh.spawn(
            "hello-agent", "agent", "--service", "hello", "--port", str(free_port()),
            "--admin-port", "0", "--outbound", "", "--instance-id", "h1", "--preset", "local",
        )  # fmt: skip
        await until(lambda: "h1" in observer.view.members, timeout=15)
        assert observer.view.members["h1"].state is State.ALIVE
        struck = time.monotonic()
        agent.signal(signal.SIGKILL)
        await until(lambda: observer.view.members["h1"].state is State.SUSPECT, timeout=QUICK)
        took = time.monotonic() - struck
        assert took < QUICK < SILENT_FOR / 10
        await until(lambda: suspects, timeout=QUICK)
        assert suspects[0].detail["cause"] == "connection closed"
        assert observer.presence is not None
        assert observer.presence.outcomes["gone"] >= 1
    finally:
        mesh.close()
        await listener.close()


async def test_a_connection_that_claims_what_the_view_does_not_know_changes_nothing(
    presence_nats: NatsServer, observer: Node
) -> None:
    """The name is the client's to choose: a stranger's, or a known instance's under another
    incarnation, is passed on by the watcher and refused by every view, and counted."""
    # A real node's heartbeat puts h2 (incarnation 5) in the view; then three connections
    # claim it under another incarnation, claim a stranger, and claim nothing at all.
    announcer = await nats.connect(presence_nats.url, name="agent:hello:h2:5")
    beat = Heartbeat(service="hello", instance="h2", host="127.0.0.1", port=9, incarnation=5, seq=1)
    await announcer.publish(subjects.heartbeat("hello", "h2"), encode(beat))
    await until(lambda: "h2" in observer.view.members)
    before = dict(observer.metrics.view_dropped)
    version = observer.view.version
    for name in ("agent:hello:h2:6", "agent:hello:stranger:5", "mesh-cli"):
        client = await nats.connect(presence_nats.url, name=name)
        await client.close()
    assert observer.presence is not None
    await until(lambda: observer.presence is not None and observer.presence.outcomes["foreign"])
    dropped = observer.metrics.view_dropped
    await until(
        lambda: (
            (dropped.get("stale", 0), dropped.get("unknown", 0))
            >= (before.get("stale", 0) + 1, before.get("unknown", 0) + 1)
        )
    )
    assert observer.view.members["h2"].state is State.ALIVE
    assert observer.view.version == version
    await announcer.close()  # its own connection closing is news, though
    await until(lambda: observer.view.members["h2"].state is State.SUSPECT, timeout=QUICK)


async def start_fails(url: str, password: str, error: type[Exception], said: str) -> None:
    """A watcher logging in as `presence` with `password` fails to start, saying `said`."""
    settings = config.Settings(
        nats_url=url,
        presence_user="presence",
        presence_password=password,  # type: ignore[arg-type]
    )
    watcher = Presence(settings, MemoryHub().bus(), node="gw-1", metrics=Metrics())
    with pytest.raises(error, match=said):
        await watcher.start()
    await watcher.stop()


async def test_a_refused_presence_login_fails_naming_its_settings(
    presence_nats: NatsServer,
) -> None:
    await start_fails(
        presence_nats.url, "not-the-password", BusRefused, r"presence login.*MESH_PRESENCE_USER"
    )


async def test_a_presence_login_that_hears_no_advisories_fails_at_start(
    nats_server: NatsServer,
) -> None:
    """A server without accounts takes any login, and its global account publishes no
    advisories: presence would be silently off."""
    await start_fails(
        nats_server.url, "anything", ConfigError, r"MESH_PRESENCE_\*: this login hears no connect"
    )
