"""A node's side of `mesh tap`: learns the open taps and sends them its requests in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.engine.access_log import Timestamps
from mesh.errors import BusError
from mesh.messages import RequestRecord, TapOpen, TapRecords, decode_counted, encode
from mesh.metrics import Metrics
from mesh.observe.tap_table import RecordCap, TapTable
from mesh.tasks import cancel_and_wait

if TYPE_CHECKING:
    from mesh.engine.engine import Engine, Finished


# While a tap is open its records leave in a batch this often: a live view for people at
# a few messages a second per node, and the request path never waits on NATS.
FLUSH_EVERY = 0.2
# One batch's records, encoded, stay below the 64 KiB any mesh message may be.
BATCH_BYTES = 48 * 1024
# A refused tap is told so, within this many notices a second from a node: a flood of
# announcements is not answered in kind, and a real `mesh tap` announces itself again
# every few seconds, so it hears soon after the flood ends.
REFUSALS_TOLD = 5


class TapSource:
    """Feeds the open taps from the engines it serves (a gateway's, or an agent's two).

    While no tap is open the engines' `taps` is None and requests cost one check. A
    request a tap wants becomes a record on that tap's pending list (bounded, and within
    the node's per-second cap); a background task sends the lists in batches.
    """

    def __init__(
        self,
        bus: Bus,
        node: str,
        service: str,
        metrics: Metrics,
        *,
        per_second: int,
        most_open: int,
        cannot: str = "",
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._cannot = cannot  # why this node sees no request to tap; "": it does
        self._node = node
        self._subject: Callable[[str], str] = lambda tap: subjects.tapped(tap, service)
        self._metrics = metrics
        self._clock = clock
        self.table = TapTable(most_open)
        self._cap = RecordCap(per_second)
        self._told = RecordCap(REFUSALS_TOLD)
        self._room = per_second  # pending records per tap: a second's worth at most
        self._engines: list[Engine] = []
        self._timestamps = Timestamps()
        self._size = msgspec.json.Encoder().encode
        self._opened = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.refused = 0
        metrics.gauge(
            "mesh_taps_open",
            "Taps (mesh tap) this node sends records to.",
            (),
            lambda: [((), float(len(self.table.taps)))],
        )
        metrics.counter(
            "mesh_taps_refused",
            "Tap announcements refused: MESH_TAP_MAX_OPEN taps were open already.",
            (),
            lambda: [((), float(self.refused))],
        )
        metrics.counter(
            "mesh_tap_records_sent",
            "Request records sent to taps.",
            (),
            lambda: [((), float(self.sent))],
        )
        metrics.counter(
            "mesh_tap_records_dropped",
            "Request records taps wanted but did not get: over MESH_TAP_MAX_RECORDS a "
            "second, or NATS unreachable.",
            (),
            lambda: [((), float(self.dropped))],
        )

    def serve(self, engine: Engine) -> None:
        """Offer `engine`'s finished requests to the open taps."""
        self._engines.append(engine)
        engine.taps = self if self.table.taps else None

    async def start(self) -> None:
        await self._bus.subscribe(subjects.TAP, self._on_announcement)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_every(), name="taps")

    async def stop(self) -> None:
        await cancel_and_wait(self._flusher)

    # --- the request path, while a tap is open ---

    def offer(self, finished: Finished) -> None:
        routed, method, target = finished.routed, finished.method, finished.target
        status = finished.status
        service = routed.service if routed is not None else ""
        route = routed.route if routed is not None else ""
        record: RequestRecord | None = None
        for tap in self.table.taps.values():
            if not tap.wants(method, service, route, target, status):
                continue
            if not tap.sampled(finished.engine.rng):
                continue
            if len(tap.pending) >= self._room or not self._cap.take():
                tap.dropped += 1
                self.dropped += 1
                continue
            if record is None:  # built once, whichever taps want it
                record = finished.record(self._timestamps())
            tap.pending.append(record)

    # --- off the request path ---

    async def _on_announcement(self, delivery: Delivery) -> None:
        message = decode_counted(delivery.subject, delivery.data, self._metrics.invalid_message)
        if isinstance(message, TapOpen):
            now = self._clock.monotonic()
            self._cap.tick(now)  # the flushing rounds tick it only while a tap is open
            self._told.tick(now)
            if self._cannot:
                self.refused += 1
                if self._told.take():
                    await self._refuse(message.id, self._cannot)
            elif self.table.announced(message, now):
                self._engage()
            else:
                self.refused += 1
                if self._told.take():
                    await self._refuse(message.id)

    async def _refuse(self, tap: str, why: str = "") -> None:
        """Tell a tap this node does not send it records (its command says so)."""
        notice = TapRecords(tap=tap, node=self._node, refused=True, why=why)
        with contextlib.suppress(BusError):  # counted already; it asks again anyway
            await self._bus.publish(self._subject(tap), encode(notice))

    def _engage(self) -> None:
        """Point the engines at the taps while one is open, at nothing otherwise."""
        taps = self if self.table.taps else None
        for engine in self._engines:
            engine.taps = taps
        if taps is None:
            self._opened.clear()
        else:
            self._opened.set()

    async def _flush_every(self) -> None:
        while True:
            await self._opened.wait()
            await asyncio.sleep(FLUSH_EVERY)
            now = self._clock.monotonic()
            self._cap.tick(now)
            self.table.expire(now)
            self._engage()
            await self.flush()

    async def flush(self) -> None:
        """Send every open tap what is pending for it, and what was dropped since."""
        for tap in list(self.table.taps.values()):
            if not tap.pending and not tap.dropped:
                continue
            records, tap.pending = tap.pending, []
            dropped, tap.dropped = tap.dropped, 0
            for batch in self._batches(tap.id, records, dropped):
                try:
                    await self._bus.publish(self._subject(tap.id), encode(batch))
                except BusError:
                    self.dropped += len(batch.records)
                else:
                    self.sent += len(batch.records)

    def _batches(self, tap: str, records: list[RequestRecord], dropped: int) -> list[TapRecords]:
        groups: list[list[RequestRecord]] = [[]]
        size = 0
        for record in records:
            length = len(self._size(record)) + 1
            if length > BATCH_BYTES:  # a path as long as a message: not worth splitting
                dropped += 1
                self.dropped += 1
                continue
            if size + length > BATCH_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(record)
            size += length
        return [
            TapRecords(tap=tap, node=self._node, records=group, dropped=dropped if i == 0 else 0)
            for i, group in enumerate(groups)
        ]
