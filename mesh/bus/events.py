"""Mesh events: published on mesh.v1.events.<kind>.<service>, kept once in MESH_EVENTS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, NatsBus, until_done
from mesh.clock import Clock
from mesh.config import Settings
from mesh.errors import BusError
from mesh.messages import Event, encode
from mesh.metrics import Metrics
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Events waiting for NATS; an outage longer than this many events loses the oldest.
QUEUE_LIMIT = 4096
# Seconds JetStream has to say it stored an event; then it is published again in
# RETRY_STORE seconds (the duplicate window keeps one copy). A stream whose leader died
# elects another in some 4 to 9 s, and stores nothing meanwhile.
STORE_WAIT = 2.0
RETRY_STORE = 0.5


class EventLog:
    """A queue of events drained to NATS in order, surviving short outages."""

    def __init__(
        self,
        bus: Bus,
        node: str,
        metrics: Metrics,
        *,
        own: str | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._node = node
        # With `own` (a service), only that service's events and policy acknowledgements
        # are published: all that credentials confined to the service may send.
        self._own = own
        self._metrics = metrics
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._bus.on_state(self._on_bus_state)
        self._task = asyncio.create_task(self._drain(), name="events")

    def emit(self, event: Event) -> None:
        if self._closed:
            return  # what a stopping node still observes is for the nodes that stay
        if self._own is not None and event.service != self._own and not is_ack(event):
            return
        stamped = msgspec.structs.replace(
            event, node=event.node or self._node, at=event.at or self._clock.wall()
        )
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            self._metrics.events_dropped += 1
        self._queue.append(stamped)
        self._ready.set()

    def _on_bus_state(self, connected: bool) -> None:
        if connected:
            self._ready.set()

    async def _drain(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._publish_queued()

    async def _publish_queued(self) -> None:
        """In order, each event until MESH_EVENTS stored it (or there is no such stream:
        it went out live, and nobody keeps events). One that was delivered live but not
        stored (an election) goes out again: live readers see an id twice and fold it."""
        while self._queue and self._bus.connected:
            event = self._queue[0]
            try:
                await self._bus.publish_stored(
                    subjects.event(event.kind, event.service),
                    encode(event),
                    msg_id=event.id,
                    stream=subjects.EVENTS_STREAM,
                    timeout=STORE_WAIT,
                )
            except BusError as exc:
                log.debug("event %s waits to be stored: %s", event.id, exc)
                asyncio.get_running_loop().call_later(RETRY_STORE, self._ready.set)
                return
            self._queue.popleft()

    async def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued (for up to `timeout`), then stop."""
        self._closed = True
        await cancel_and_wait(self._task)
        with contextlib.suppress(BusError, TimeoutError):
            await asyncio.wait_for(self._publish_queued(), timeout)
            if self._bus.connected:
                await self._bus.flush(timeout)
        if self._queue:
            log.warning("%d events not published before stop", len(self._queue))


def is_ack(event: Event) -> bool:
    """A node's answer to a policy revision (its subject names the policy, not the node)."""
    return event.kind in ("policy.applied", "policy.rejected")


async def ensure_stream(bus: NatsBus, settings: Settings) -> None:
    """Create or update MESH_EVENTS once NATS is reachable, retrying until it works."""
    await until_done(bus, f"the {subjects.EVENTS_STREAM} stream", lambda: set_up(bus, settings))


async def set_up(bus: NatsBus, settings: Settings) -> None:
    """Create or update MESH_EVENTS now; a BusError if NATS will not."""
    await bus.ensure_stream(
        subjects.EVENTS_STREAM,
        [subjects.EVENTS],
        max_age=settings.events_max_age,
        max_bytes=settings.events_max_bytes,
        # JetStream drops a second message with the same Nats-Msg-Id within this window,
        # so N observers of one happening store it once; it refuses a window beyond max_age.
        duplicate_window=min(settings.events_duplicate_window, settings.events_max_age),
    )
