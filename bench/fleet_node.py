"""One simulated agent of a fleet: a real mesh node taking policies, each step stamped.

What it shares with `mesh agent` (agents/agent.py): its own NATS connection, its
heartbeats and sync answers (the Announcer), the policy feed (watch, decode, compile,
swap into a real engine's directory and router, acknowledge through the EventLog), the
evidence and tap subscriptions (Forwarding). What it leaves out, and why:

- heartbeat subscriptions (Discovery is built but not started): it calls nothing, and an
  agent that calls nothing needs no view. Today every agent subscribes to every heartbeat,
  N x N messages that alone keep a few hundred co-located agents from coming up; once
  Discovery subscribes per called service (issue 14, item 1b), `mesh agent` with no
  outbound calls does what this node does.
- health checks of the local service, the admin port, the outbound proxy: one demo
  service checked by a thousand agents, and a thousand listening ports, are load that
  one agent per host does not put on its host; none of it is on the policy path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from agents.inbound import unguarded
from bench.arrivals import Arrivals
from bench.marks import note_reads, note_writes, socket_fd, transport_of
from mesh import clock
from mesh.bus.kv import KvEntry
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import EntryHandler, Revisions, Watching, bucket
from mesh.messages import Heartbeat
from mesh.node.forwarding import Forwarding
from mesh.node.node import Node


@dataclass
class Stamp:
    """One revision handled by one node; wall seconds (one machine: one clock)."""

    key: str
    revision: int
    stored: float  # the NATS server stored the revision
    started: float  # the feed's handler began
    swapped: float  # decoded, compiled, swapped in, acknowledgement queued
    cpu: float  # the handler's CPU seconds (this thread's): the node's own work


class StampedRevisions:
    """The policy bucket as the feed sees it, each entry's handling stamped."""

    def __init__(self, source: Revisions, node: FleetNode) -> None:
        self._source = source
        self._node = node

    async def open(self) -> None:
        await self._source.open()

    async def watch(self, handler: EntryHandler) -> Watching:
        async def stamped(entry: KvEntry) -> None:
            started, cpu = clock.wall(), time.thread_time()
            await handler(entry)  # runs to its end without yielding: the work alone
            cpu = time.thread_time() - cpu
            self._node.stamps.append(
                Stamp(entry.key, entry.revision, entry.created, started, clock.wall(), cpu)
            )

        return await self._source.watch(stamped)


class FleetNode:
    """A real node (see the module's docstring for what it leaves out)."""

    def __init__(
        self, settings: Settings, name: str, service: str, port: int, arrivals: Arrivals
    ) -> None:
        record = Heartbeat(
            service=service,
            instance=name,
            host="127.0.0.1",
            port=port,
            incarnation=0,
            seq=0,
            interval=settings.timing.interval,
        )
        self.name = name
        self.node = Node(settings, record)
        self._settings = settings
        self._arrivals = arrivals
        self.stamps: list[Stamp] = []
        # mark (bench/marks.py) -> when this node's own reads first had it, and when a
        # write first sent it (its acknowledgements' event ids)
        self.reads: dict[str, float] = {}
        self.writes: dict[str, float] = {}
        engine = Engine(settings, Directory(node=name), self.node.metrics, strip_mesh_headers=False)
        self.forwarding = Forwarding(
            self.node,
            engine,
            settings,
            zone=settings.zone,
            fallback=engine.default_routes,
            policies=StampedRevisions(bucket(self.node.bus), self),
            vet=unguarded(service),
            explains=False,
        )
        self.node.announcer.load_source = self.forwarding.load

    async def start(self, connect_within: float) -> None:
        """Node.start without Discovery's (see the module's docstring), then the feed."""
        node = self.node
        await node.bus.start(wait=connect_within)
        self._stamp_socket()
        node.events.start()
        await node.announcer.start()
        await self.forwarding.start(wait_policies=self._settings.policy_wait)

    def _stamp_socket(self) -> None:
        """Arrivals on this node's socket, its reads and its writes (nats-py's transport)."""
        transport = transport_of(self.node.bus.client)
        self._arrivals.watch(self.name, socket_fd(transport))
        note_reads(transport._io_reader, self.reads)
        note_writes(transport, self.writes)

    def dump(self) -> dict[str, Any]:
        return {
            "stamps": [asdict(stamp) for stamp in self.stamps],
            "reads": self.reads,
            "writes": self.writes,
        }

    async def stop(self) -> None:
        await self.forwarding.stop()
        await self.node.stop()
