"""This node's voice: its heartbeat every interval and at once on change, sync answers, leave."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.errors import BusError
from mesh.messages import Heartbeat, Leave, LeaveReason, Load, encode
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def new_incarnation(clock: Clock = system_clock) -> int:
    """Milliseconds of wall time: a restarted process announces a higher incarnation."""
    return int(clock.wall() * 1000)


class Announcer:
    """Owns the node's record; `seq` grows with every message it sends."""

    def __init__(
        self,
        bus: Bus,
        record: Heartbeat,
        *,
        clock: Clock = system_clock,
        incarnation: int | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        if incarnation is None:
            incarnation = new_incarnation(clock)
        self._record = msgspec.structs.replace(record, incarnation=incarnation, seq=0)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._goodbye: bool | None = None
        self.sent = 0
        self.announced = asyncio.Event()  # NATS took a heartbeat of ours (for the first time)
        # The load figures of each heartbeat, given the monotonic time it is sent at.
        self.load_source: Callable[[float], Load] | None = None

    @property
    def record(self) -> Heartbeat:
        return self._record

    async def start(self) -> None:
        await self._bus.subscribe(subjects.SYNC, self._on_sync)
        # Nodes that follow only some services ask those services' nodes alone.
        await self._bus.subscribe(subjects.sync(self._record.service), self._on_sync)
        self._bus.on_state(self._on_bus_state)
        self._task = asyncio.create_task(self._run(), name="announcer")

    def update(self, **changes: Any) -> None:
        """Change the record; a change that matters is announced at once."""
        new = msgspec.structs.replace(self._record, **changes)
        if new != self._record:
            urgent = any(
                getattr(new, k) != getattr(self._record, k) for k in changes if k != "load"
            )
            self._record = new
            if urgent:
                self._wake.set()

    def _on_bus_state(self, connected: bool) -> None:
        if connected:
            self._wake.set()

    async def _on_sync(self, delivery: Delivery) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:  # until leave() cancels it
            self._wake.clear()
            await self._publish_heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._record.interval)

    async def _publish_heartbeat(self) -> None:
        if not self._bus.connected:
            return  # a heartbeat queued while disconnected would arrive stale anyway
        load = self._record.load
        if self.load_source is not None:
            load = self.load_source(self._clock.monotonic())
        self._record = msgspec.structs.replace(self._record, seq=self._record.seq + 1, load=load)
        record = self._record
        try:
            await self._bus.publish(
                subjects.heartbeat(record.service, record.instance), encode(record)
            )
            self.sent += 1
            self.announced.set()
        except BusError as exc:
            log.debug("heartbeat not sent: %s", exc)
            # NATS did not take it: its seq goes to the next one, so that the first
            # heartbeat the others can see is seq 1, which tells them they saw us start.
            if self._record.seq == record.seq:
                self._record = msgspec.structs.replace(self._record, seq=record.seq - 1)

    async def leave(self, reason: LeaveReason = "shutdown", *, timeout: float = 2.0) -> bool:
        """Stop heartbeating and say goodbye; True when NATS confirmed it got the message.

        Saying it twice sends nothing more: the first answer stands.
        """
        if self._goodbye is not None:
            return self._goodbye
        await cancel_and_wait(self._task)
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
