"""A loopback 3-node NATS cluster for tests, with MESH_EVENTS and the policy bucket at 3
replicas, and what tests ask of it: who leads what, moving a leader, what the stream holds.

Fixtures live in the modules that use it (`with running(...)`): a fixture imported from
here would be redefined by every test parameter that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from mesh import subjects
from mesh.bus import setup
from mesh.config import load
from mesh.playground.natscluster import NatsCluster

SIZE = 3
POLICY_STREAM = f"KV_{subjects.POLICY_BUCKET}"
READY = 20.0  # seconds a new cluster gets to elect its leaders (some 1 s on loopback)


@contextlib.contextmanager
def running(binary: str, folder: Path) -> Iterator[NatsCluster]:
    """Three nodes, the stream and the bucket at 3 replicas; stopped at the end. With the
    accounts `mesh up --cluster` gives them: a presence login hears every node's clients."""
    cluster = NatsCluster(binary, SIZE, folder=folder, presence=True)
    cluster.start()
    try:
        settings = load(nats_url=cluster.urls, nats_replicas=SIZE)
        asyncio.run(setup.set_up(settings, wait=READY))
        yield cluster
    finally:
        cluster.stop()


def roles(cluster: NatsCluster) -> list[int]:
    """The nodes' indexes, the JetStream metadata leader's first (from the nodes' logs: only
    the system account may ask). A test that kills another node spends no election on the
    metadata group, which new consumers (a watch, a replay) wait for."""

    def leads(n: int) -> bool:
        log = cluster.servers[n].log_path
        said = (
            [line for line in log.read_text().splitlines() if "metadata leader" in line]
            if log
            else []
        )
        return bool(said) and "Self is new JetStream cluster metadata leader" in said[-1]

    first = next((n for n in range(SIZE) if leads(n)), 0)
    return [first, *(n for n in range(SIZE) if n != first)]


async def connect(urls: str) -> Client:
    """A raw client for the test's own look at the cluster (any live node)."""
    return await nats.connect(servers=urls.split(","), connect_timeout=1, max_reconnect_attempts=-1)


async def stream_state(client: Client, stream: str) -> dict[str, Any]:
    """The stream's info as the server tells it ($JS.API.STREAM.INFO), leader included."""
    reply = await client.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def leader(client: Client, stream: str) -> str:
    """The name of the node leading `stream` ('' while it has none: nobody answers then)."""
    try:
        state = await stream_state(client, stream)
    except nats.errors.TimeoutError:
        return ""
    return str(state.get("cluster", {}).get("leader", ""))


async def lead(client: Client, stream: str, node: str, timeout: float = 10.0) -> None:
    """Make `node` the leader of `stream` (a step-down naming it as preferred)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := await leader(client, stream)) != node:
        if now:
            ask = json.dumps({"placement": {"preferred": node}}).encode()
            with contextlib.suppress(nats.errors.TimeoutError):
                await client.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", ask, timeout=2)
        if loop.time() > deadline:
            raise AssertionError(f"{node} does not lead {stream} (leader: {now or 'none'})")
        await asyncio.sleep(0.1)


async def current(client: Client, stream: str, timeout: float) -> float:
    """Seconds until `stream` has a leader and every replica is current (caught up)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    state: dict[str, Any] = {}
    while True:
        with contextlib.suppress(nats.errors.TimeoutError, ValueError):
            state = (await stream_state(client, stream)).get("cluster", {})
            replicas = state.get("replicas", [])
            caught_up = all(r.get("current") and not r.get("offline") for r in replicas)
            if state.get("leader") and len(replicas) == SIZE - 1 and caught_up:
                return loop.time() - start
        if loop.time() - start > timeout:
            raise AssertionError(f"{stream} not caught up within {timeout} s: {state}")
        await asyncio.sleep(0.1)


async def stored_ids(client: Client, stream: str) -> list[str]:
    """The Nats-Msg-Id of every message `stream` holds, in order."""
    js = client.jetstream()
    info = await js.stream_info(stream)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            msg = await js.get_msg(stream, seq)
            ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
    return ids
