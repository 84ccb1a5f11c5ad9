"""Whether a presence watcher covers this node, and so how often its heartbeats must go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.messages import Coverage, decode_counted
from mesh.timing import Timing

log = logging.getLogger(__name__)

# Announcements a watcher may miss before its coverage is over: one lost message or a
# busy second must not send every node of the mesh back to fast beats.
LAPSE = 3


@dataclass(frozen=True, slots=True)
class Cover:
    """The latest word of a watcher: it holds until `until` (monotonic seconds)."""

    until: float
    closes_within: float


def heard(message: Coverage, now: float) -> Cover:
    return Cover(until=now + message.every * LAPSE, closes_within=message.closes_within)


def covered(cover: Cover | None, timing: Timing, now: float) -> bool:
    """A watcher holds now, and the servers close a silent connection no later than our
    own silence would make us suspect: with slow beats, a hang is found as soon as before."""
    return (
        cover is not None
        and now < cover.until
        and cover.closes_within <= timing.interval * timing.suspect_intervals
    )


def beat_interval(cover: Cover | None, timing: Timing, slow: float, now: float) -> float:
    """Seconds until our next heartbeat: `slow` while covered (never faster than the
    timing's own interval; 0 turns slow beats off), the timing's interval otherwise."""
    if slow > 0 and covered(cover, timing, now):
        return max(slow, timing.interval)
    return timing.interval


class CoverageWatch:
    """Hears the watchers' announcements; tells listeners when coverage begins or ends
    (a lapse is noticed by a timer, since its sign is that nothing arrives)."""

    def __init__(
        self,
        bus: Bus,
        timing: Timing,
        *,
        count_invalid: Callable[[str], None],
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._timing = timing
        self._count_invalid = count_invalid
        self._clock = clock
        self.cover: Cover | None = None
        self._covered = False
        self._lapse: asyncio.TimerHandle | None = None
        self._listeners: list[Callable[[bool], None]] = []

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    @property
    def covered(self) -> bool:
        return self._covered

    def interval(self, slow: float) -> float:
        """Seconds between our heartbeats now (beat_interval)."""
        return beat_interval(self.cover, self._timing, slow, self._clock.monotonic())

    async def start(self) -> None:
        await self._bus.subscribe(subjects.COVERAGE, self._on_coverage)

    def stop(self) -> None:
        if self._lapse is not None:
            self._lapse.cancel()

    async def _on_coverage(self, delivery: Delivery) -> None:
        message = decode_counted(delivery.subject, delivery.data, self._count_invalid)
        if not isinstance(message, Coverage):
            return
        now = self._clock.monotonic()
        self.cover = heard(message, now)
        if self._lapse is not None:
            self._lapse.cancel()
        self._lapse = asyncio.get_running_loop().call_later(self.cover.until - now, self._recheck)
        self._recheck()

    def _recheck(self) -> None:
        now = covered(self.cover, self._timing, self._clock.monotonic())
        if now != self._covered:
            self._covered = now
            log.info("presence coverage %s", "begins" if now else "ended")
            for listener in self._listeners:
                listener(now)
