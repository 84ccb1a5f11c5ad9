"""Slow heartbeats under a presence watcher, on a real nats-server: the servers' pings time
a node's silence, a hung node is still found in seconds, and a lie is refuted at once."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mesh_procs import Mesh
from waiting import until

from mesh import config, subjects
from mesh.membership.coverage import LAPSE
from mesh.membership.presence import COVER_EVERY
from mesh.membership.view import State
from mesh.messages import Gone, Heartbeat, encode
from mesh.node.node import Node
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer

SLOW = 20.0  # seconds between covered beats here: 60 s before silence alone would tell


def settings_for(server: NatsServer, *, presence: bool) -> config.Settings:
    env = server.presence_env() if presence else {}
    return config.Settings(
        nats_url=server.url,
        preset="lan",  # 3 s to suspect: the servers' 1 s pings, 2 unanswered, cover it
        heartbeat_covered_interval=SLOW,
        presence_user=env.get("MESH_PRESENCE_USER"),
        presence_password=env.get("MESH_PRESENCE_PASSWORD"),  # type: ignore[arg-type]
    )


def record(service: str, instance: str, role: str = "agent") -> Heartbeat:
    return Heartbeat(
        service=service, instance=instance, role=role, host="127.0.0.1", port=9,  # type: ignore[arg-type]
        incarnation=0, seq=0, interval=1.0,
    )  # fmt: skip


@pytest.fixture
async def watcher(presence_nats: NatsServer) -> AsyncIterator[Node]:
    node = Node(settings_for(presence_nats, presence=True), record("gateway", "gw-c", "gateway"))
    await node.start()
    yield node
    await node.stop()


async def test_the_watcher_reads_how_soon_the_servers_close_a_silent_client(
    watcher: Node,
) -> None:
    assert watcher.presence is not None
    await until(lambda: watcher.presence is not None and watcher.presence.closes_within)
    assert watcher.presence.closes_within == 3.0  # 1 s pings, the third unanswered


async def test_a_covered_node_beats_slowly_and_fast_again_once_the_watcher_stops(
    presence_nats: NatsServer, watcher: Node
) -> None:
    agent = Node(settings_for(presence_nats, presence=False), record("hello", "h-c1"))
    await agent.start()
    try:
        await until(lambda: agent.announcer.record.interval == SLOW, timeout=5)
        # The watcher's view learns the new pace from the full record it came in.
        await until(lambda: watcher.view.members["h-c1"].record.interval == SLOW, timeout=2)
        assert watcher.coverage.covered  # the watcher's own node beats slowly too
        await watcher.stop()
        stopped = time.monotonic()
        await until(lambda: agent.announcer.record.interval == 1.0, timeout=LAPSE + 2)
        took = time.monotonic() - stopped
        # One missed announcement is not a lapse; LAPSE of them are.
        assert (LAPSE - 1) * COVER_EVERY <= took <= LAPSE * COVER_EVERY + 1.5
    finally:
        await agent.stop()


async def test_a_node_said_gone_while_alive_refutes_it_with_its_record(
    presence_nats: NatsServer, watcher: Node
) -> None:
    agent = Node(settings_for(presence_nats, presence=False), record("hello", "h-c2"))
    await agent.start()
    try:
        await until(lambda: watcher.view.members.get("h-c2") is not None, timeout=5)
        await until(lambda: watcher.view.members["h-c2"].record.interval == SLOW, timeout=5)
        full = agent.announcer.full_sent
        lie = Gone(
            service="hello",
            instance="h-c2",
            incarnation=agent.announcer.record.incarnation,
            reason="Stale Connection",
            witness="gw-c",
        )
        said = time.monotonic()
        await watcher.bus.publish(subjects.gone("hello", "h-c2"), encode(lie))
        await until(lambda: watcher.view.members["h-c2"].state is State.SUSPECT, timeout=2)
        await until(lambda: watcher.view.members["h-c2"].state is State.ALIVE, timeout=2)
        assert time.monotonic() - said < SLOW / 10  # not its next beat: its answer
        assert agent.announcer.full_sent > full
    finally:
        await agent.stop()


async def test_a_hung_node_beating_slowly_is_suspect_once_the_server_closes_it(
    presence_nats: NatsServer, watcher: Node, tmp_path: Path
) -> None:
    """SIGSTOP: no close, no beat for SLOW seconds; the server's unanswered pings close
    the connection within 3 s, and presence passes that on. SIGCONT: back by itself."""
    mesh = Mesh(presence_nats.url, tmp_path, env={"MESH_HEARTBEAT_COVERED_INTERVAL": str(SLOW)})
    try:
        agent = mesh.spawn(
            "hung-agent", "agent", "--service", "hello", "--port", str(free_port()),
            "--admin-port", "0", "--outbound", "", "--instance-id", "h-c3", "--preset", "lan",
        )  # fmt: skip
        await until(lambda: "h-c3" in watcher.view.members, timeout=15)
        await until(lambda: watcher.view.members["h-c3"].record.interval == SLOW, timeout=5)
        agent.signal(signal.SIGSTOP)
        hung = time.monotonic()
        await until(lambda: watcher.view.members["h-c3"].state is State.SUSPECT, timeout=8)
        took = time.monotonic() - hung
        assert took < 3 * 1.0 + 2  # the servers' 3 s, and the advisory; not 3 x SLOW
        agent.signal(signal.SIGCONT)
        await until(lambda: watcher.view.members["h-c3"].state is State.ALIVE, timeout=10)
    finally:
        mesh.close()
