"""Folds bus messages into the view, expires silent members, freezes while NATS is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.bus.events import EventLog
from mesh.clock import Clock
from mesh.errors import BusError
from mesh.membership import view as membership
from mesh.messages import Event, Sync, decode_counted, encode
from mesh.metrics import Metrics
from mesh.tasks import cancel_and_wait
from mesh.timing import Timing

log = logging.getLogger(__name__)

Listener = Callable[[membership.View], None]
_ARRIVALS = frozenset({"instance.up", "instance.restarted"})


class Discovery:
    """The shell around the pure view: decide in mesh.membership.view, act here."""

    def __init__(
        self,
        bus: Bus,
        timing: Timing,
        *,
        node: str,
        metrics: Metrics,
        events: EventLog | None,
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._node = node
        self._metrics = metrics
        self._events = events
        self.view = membership.View(timing)
        self._listeners: list[Listener] = []
        self._ticker: asyncio.Task[None] | None = None
        # Expiry runs this often; a quarter interval keeps detection within 25% of target.
        self._tick_every = min(0.25, timing.interval / 4)

    def on_change(self, listener: Listener) -> None:
        """Call `listener(view)` whenever routing may have changed."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._bus.subscribe(subjects.HEARTBEATS, self._deliver)
        await self._bus.subscribe(subjects.LEAVES, self._deliver)
        await self._bus.subscribe(subjects.GONE, self._deliver)
        self._bus.on_state(self._on_bus_state)
        if not self._bus.connected:
            self.view = membership.freeze(self.view, self._clock.monotonic())
        else:
            await self._request_sync()
        self._ticker = asyncio.create_task(self._tick_forever(), name="discovery-tick")

    async def stop(self) -> None:
        await cancel_and_wait(self._ticker)

    async def _deliver(self, delivery: Delivery) -> None:
        message = decode_counted(delivery.subject, delivery.data, self._metrics.invalid_message)
        if message is None:
            return
        view, effects = membership.apply(
            self.view, message, self._clock.monotonic(), wall=self._clock.wall()
        )
        self._commit(view, effects)

    def _commit(self, view: membership.View, effects: list[membership.Effect]) -> None:
        changed = view.version != self.view.version
        self.view = view
        for effect in effects:
            if isinstance(effect, Event):
                log.info("%s %s/%s", effect.kind, effect.service, effect.instance)
                if self._events is not None and not self._own_arrival(effect):
                    self._events.emit(effect)
            else:
                self._metrics.dropped(effect.reason)
        if changed:
            for listener in self._listeners:
                listener(view)

    def _own_arrival(self, event: Event) -> bool:
        """Our own start: the nodes already there, or starting within the arrival grace,
        tell it. We cannot know whether we restart an instance they knew
        (instance.restarted) or are a new one, and ours, under the same id, would be the
        first copy out, the one stored: every restart would read as a start."""
        return event.instance == self._node and event.kind in _ARRIVALS

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_every)
            view, effects = membership.tick(self.view, self._clock.monotonic())
            if view is not self.view:
                self._commit(view, effects)

    def _on_bus_state(self, connected: bool) -> None:
        now = self._clock.monotonic()
        if connected:
            self.view = membership.thaw(self.view, now)
            asyncio.get_running_loop().create_task(self._request_sync())
        else:
            # Expiries already due are settled first; only later silence is excused.
            view, effects = membership.tick(self.view, now)
            if view is not self.view:
                self._commit(view, effects)
            self.view = membership.freeze(self.view, now)

    async def _request_sync(self) -> None:
        """Ask every node for its heartbeat now, so a (re)started observer is current at once."""
        with contextlib.suppress(BusError):
            await self._bus.publish(subjects.SYNC, encode(Sync(node=self._node)))
