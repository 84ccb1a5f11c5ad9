"""bench.fanout's two sides: N listening nodes with stamped sockets, and the publisher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nats.js.api import KeyValueConfig, RePublish

from bench.arrivals import Arrivals
from bench.console import BenchError
from bench.cpu import process_cpu
from bench.marks import event_mark, first_seen, note_reads, note_writes, socket_fd, transport_of
from mesh import clock
from mesh.bus import Delivery, NatsBus
from mesh.bus.kv import KvEntry, KvStore, Watch
from mesh.config import Settings
from mesh.playground.natsserver import NatsServer

WAYS = ["kv", "core", "republish"]
KV_BUCKET, REPUBLISHING_BUCKET = "bench_fanout", "bench_fanout_republished"
CORE_SUBJECT, REPUBLISHED = "bench.fanout.core", "bench.fanout.republished"
KEY = "service.bench-svc"
VALUE = b'{"kind": "Service", "name": "bench-svc", "timeouts": {"request": "5s"}}' * 3
STARTING = 25  # nodes connecting at once


async def _ignore_entry(entry: KvEntry) -> None:
    """What a node does with a change is not measured here: only its arrival."""


async def _ignore(delivery: Delivery) -> None:
    """As _ignore_entry, for core messages."""


class Fleet:
    """N nodes, each its own connection with a watch and two subscriptions."""

    def __init__(self, settings: Settings, count: int, logdir: Path) -> None:
        self.buses = [NatsBus(settings, name=f"fanout-{i}") for i in range(count)]
        self.reads: list[dict[str, float]] = [{} for _ in range(count)]
        self._arrivals = Arrivals(logdir / "fanout.arrivals.json")
        self._stamped: dict[str, dict[str, float]] = {}
        self._watches: list[Watch] = []

    async def start(self, within: float) -> None:
        gate = asyncio.Semaphore(STARTING)

        async def start(i: int, bus: NatsBus) -> None:
            async with gate:
                await bus.start(wait=within)
                transport = transport_of(bus.client)
                self._arrivals.watch(str(i), socket_fd(transport))
                note_reads(transport._io_reader, self.reads[i])
                store = KvStore(bus, KV_BUCKET)
                await store.open()
                self._watches.append(await store.watch(_ignore_entry))
                await bus.subscribe(CORE_SUBJECT, _ignore)
                await bus.subscribe(f"{REPUBLISHED}.>", _ignore)
                await bus.flush(within)

        everyone = asyncio.gather(*(start(i, bus) for i, bus in enumerate(self.buses)))
        try:
            await asyncio.wait_for(everyone, within * (1 + len(self.buses) / STARTING))
        except TimeoutError:
            raise BenchError(f"{len(self.buses)} nodes not up in time") from None

    def holding(self, mark: str) -> int:
        return sum(1 for reads in self.reads if mark in reads)

    def collect(self) -> None:
        self._stamped = self._arrivals.collect()["marks"]

    def arrivals_of(self, mark: str, written: float, cpu: float) -> dict[str, Any]:
        """One change: its write, each node's arrival (the earliest sighting), server CPU."""
        arrivals = [
            first_seen(self._stamped.get(str(i), {}).get(mark), reads.get(mark))
            for i, reads in enumerate(self.reads)
        ]
        return {"written": written, "arrivals": arrivals, "server_cpu": cpu}

    async def stop(self) -> None:
        for watch in self._watches:
            await watch.stop()
        await asyncio.gather(*(bus.close() for bus in self.buses), return_exceptions=True)


class Publisher:
    """Makes the buckets, then one change at a time, each way, timed from its write."""

    def __init__(self, settings: Settings) -> None:
        self.bus = NatsBus(settings, name="fanout-publisher")
        self.writes: dict[str, float] = {}

    async def start(self) -> None:
        await self.bus.start(wait=10)
        note_writes(transport_of(self.bus.client), self.writes)
        await KvStore(self.bus, KV_BUCKET).open(history=1)  # room for a consumer per node
        republish = RePublish(src=f"$KV.{REPUBLISHING_BUCKET}.>", dest=f"{REPUBLISHED}.>")
        config = KeyValueConfig(bucket=REPUBLISHING_BUCKET, history=1, republish=republish)
        await self.bus.client.jetstream().create_key_value(config)

    async def change(
        self, way: str, round_: int, fleet: Fleet, server: NatsServer, within: float
    ) -> tuple[str, float, float]:
        """(mark, written, server CPU seconds) once every node's socket had the change."""
        msg_id = f"{way}-{round_}"
        mark, headers = event_mark(msg_id), {"Nats-Msg-Id": msg_id}
        cpu = process_cpu(server.pid or 0)
        if way == "core":
            await self.bus.publish(CORE_SUBJECT, VALUE, headers=headers)
        else:
            bucket = KV_BUCKET if way == "kv" else REPUBLISHING_BUCKET
            await self.bus.client.jetstream().publish(f"$KV.{bucket}.{KEY}", VALUE, headers=headers)
        deadline = clock.monotonic() + within
        while (have := fleet.holding(mark)) < len(fleet.buses):
            if clock.monotonic() > deadline:
                raise BenchError(f"{way} round {round_}: {have} of {len(fleet.buses)} nodes")
            await asyncio.sleep(0.005)
        return mark, self.writes[mark], process_cpu(server.pid or 0) - cpu

    async def stop(self) -> None:
        await self.bus.close()
