"""This node's voice: a beat every interval, its full record when it matters, load, leave."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.errors import BusError
from mesh.messages import (
    Beat,
    Gone,
    Heartbeat,
    Leave,
    LeaveReason,
    Load,
    LoadReport,
    decode_counted,
    encode,
)
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

WAKE_GAP = 0.05  # seconds: at most 20 unscheduled heartbeats a second per node


def new_incarnation(clock: Clock = system_clock) -> int:
    """Milliseconds of wall time: a restarted process announces a higher incarnation."""
    return int(clock.wall() * 1000)


class Announcer:
    """Owns the node's record; `seq` grows with every message it sends.

    Each interval it sends a short Beat, and the full record (a Heartbeat) instead when
    the record changed, in answer to a sync, first after a (re)connect, and every
    `full_every` intervals (for an observer that missed the rest).
    """

    def __init__(
        self,
        bus: Bus,
        record: Heartbeat,
        *,
        full_every: int = 10,
        clock: Clock = system_clock,
        incarnation: int | None = None,
        rng: random.Random | None = None,
        count_invalid: Callable[[str], None] = lambda family: None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        if incarnation is None:
            incarnation = new_incarnation(clock)
        self._record = msgspec.structs.replace(record, incarnation=incarnation, seq=0)
        self._full_every = full_every
        self._rng = rng or random.Random()
        self._count_invalid = count_invalid  # asks we cannot read: Metrics.invalid_message
        self._paced = self._record.interval  # the interval of the last wait
        self._full_due = True  # the first one is the announcement
        self._since_full = 0  # beats sent since the last full record
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._goodbye: bool | None = None
        self.sent = 0
        self.full_sent = 0
        self.announced = asyncio.Event()  # NATS took a heartbeat of ours (for the first time)
        # The load figures to report, given the monotonic time; None: this node routes
        # nothing. Sent beside each heartbeat while there are figures, and once after;
        # and every base interval between heartbeats slowed down under presence, since
        # watchers (`mesh top`, dashboards) want figures a second old.
        self.load_source: Callable[[float], Load] | None = None
        self._load_reported = False
        self._load_every = self._record.interval
        self._reporter: asyncio.Task[None] | None = None

    @property
    def record(self) -> Heartbeat:
        return self._record

    async def start(self) -> None:
        await self._bus.subscribe(subjects.SYNC, self._on_sync)
        # Nodes that follow only some services ask those services' nodes alone.
        await self._bus.subscribe(subjects.sync(self._record.service), self._on_sync)
        # A watcher saying we are gone while we live (a connection replaced, a lost pong):
        # our full record, at once, outweighs it on every node.
        gone = subjects.gone(self._record.service, self._record.instance)
        await self._bus.subscribe(gone, self._on_gone)
        self._bus.on_state(self._on_bus_state)
        self._task = asyncio.create_task(self._run(), name="announcer")
        if self.load_source is not None:  # set before start by the nodes that route
            self._reporter = asyncio.create_task(self._report_forever(), name="load-reports")

    def update(self, **changes: Any) -> None:
        """Change the record; a change that matters is announced at once."""
        new = msgspec.structs.replace(self._record, **changes)
        if new != self._record:
            self._record = new
            self._full_soon()

    def _full_soon(self) -> None:
        self._full_due = True
        self._wake.set()

    def _on_bus_state(self, connected: bool) -> None:
        if connected:
            self._full_soon()

    async def _on_sync(self, delivery: Delivery) -> None:
        """A sync's answer is always the full record; anything else there is counted."""
        if decode_counted(delivery.subject, delivery.data, self._count_invalid) is not None:
            self._full_soon()

    async def _on_gone(self, delivery: Delivery) -> None:
        """Said gone: refuted with the full record, if it is this incarnation (an earlier
        one's close is true)."""
        gone = decode_counted(delivery.subject, delivery.data, self._count_invalid)
        if isinstance(gone, Gone) and gone.incarnation == self._record.incarnation:
            self._full_soon()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # until leave() cancels it
            self._wake.clear()
            sent = loop.time()
            await self._publish_heartbeat()
            try:
                # Not wait_for: it wraps the wait in a task of its own, every beat.
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()
            except TimeoutError:
                continue
            # Woken early (a sync, a change, a reconnect): at most one such full record per
            # WAKE_GAP, whatever arrives meanwhile. Every sync is answered by the next one
            # (its record is the same), and a flood of syncs (any node may ask; a NATS node's
            # loss makes every follower ask at once) costs each node WAKE_GAP's rate of
            # records, not one per request.
            await asyncio.sleep(max(0.0, sent + WAKE_GAP - loop.time()))

    def _next_wait(self) -> float:
        """The interval; but the first wait at a new one ends at a random point of it:
        nodes change pace together (a presence watcher's coverage begins or ends for all
        at once), and would otherwise beat in step, every observer's load in one burst."""
        interval = self._record.interval
        if interval == self._paced:
            return interval
        self._paced = interval
        return self._rng.uniform(0.0, interval)

    async def _publish_heartbeat(self) -> None:
        if not self._bus.connected:
            self._full_due = True  # whoever we reach next may have missed the record
            return  # a heartbeat queued while disconnected would arrive stale anyway
        full = self._full_due or self._since_full + 1 >= self._full_every
        self._full_due = False
        self._record = msgspec.structs.replace(self._record, seq=self._record.seq + 1)
        record = self._record
        message: Heartbeat | Beat = record
        if not full:
            message = Beat(
                service=record.service,
                instance=record.instance,
                incarnation=record.incarnation,
                seq=record.seq,
            )
        try:
            await self._bus.publish(
                subjects.heartbeat(record.service, record.instance), encode(message)
            )
        except BusError as exc:
            log.debug("heartbeat not sent: %s", exc)
            # NATS did not take it: its seq goes to the next one, so that the first
            # heartbeat the others can see is seq 1, which tells them they saw us start.
            if self._record.seq == record.seq:
                self._record = msgspec.structs.replace(self._record, seq=record.seq - 1)
            self._full_due = self._full_due or full
            return
        self.sent += 1
        self.announced.set()
        if full:
            self.full_sent += 1
            self._since_full = 0
        else:
            self._since_full += 1
        await self._report_load(record)  # beside every heartbeat, a sync's answer too

    async def _report_forever(self) -> None:
        """Between heartbeats slower than the base interval (under presence), the figures
        still go every base interval."""
        while True:  # until leave() cancels it
            await asyncio.sleep(self._load_every)
            slow = self._record.interval > self._load_every
            if slow and self._bus.connected and self.announced.is_set():
                await self._report_load(self._record)

    async def _report_load(self, record: Heartbeat) -> None:
        """The traffic figures, while there are any, and once more when they end (so that
        a watcher does not show the last busy window for ever)."""
        if self.load_source is None:
            return
        load = self.load_source(self._clock.monotonic())
        busy = bool(load.services or load.omitted)
        if not busy and not self._load_reported:
            return
        report = LoadReport(
            service=record.service,
            instance=record.instance,
            incarnation=record.incarnation,
            load=load,
        )
        try:
            await self._bus.publish(subjects.load(record.service, record.instance), encode(report))
        except BusError as exc:
            log.debug("load report not sent: %s", exc)
            return
        self._load_reported = busy

    async def leave(self, reason: LeaveReason = "shutdown", *, timeout: float = 2.0) -> bool:
        """Stop heartbeating and say goodbye; True when NATS confirmed it got the message.

        Saying it twice sends nothing more: the first answer stands.
        """
        if self._goodbye is not None:
            return self._goodbye
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._reporter)
        record = self._record
        message = Leave(
            service=record.service,
            instance=record.instance,
            incarnation=record.incarnation,
            seq=record.seq + 1,
            reason=reason,
        )
        try:
            await self._bus.publish(
                subjects.leave(record.service, record.instance), encode(message)
            )
            await self._bus.flush(timeout)
        except BusError as exc:
            log.warning("leave not confirmed by NATS: %s", exc)
            self._goodbye = False
        else:
            self._goodbye = True
        return self._goodbye
