"""Whether a presence watcher covers this node, and so how often its heartbeats must go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.messages import Coverage, decode_counted
from mesh.timing import Timing

log = logging.getLogger(__name__)

# Watchers announce every COVER_EVERY seconds; one holds for LAPSE of them: one lost
# message or a busy second must not send every node of the mesh back to fast beats.
COVER_EVERY = 1.0
LAPSE = 3


@dataclass(frozen=True, slots=True)
class Cover:
    """The latest word of one watcher: it holds until `until` (monotonic seconds)."""

    until: float
    closes_within: float


def heard(message: Coverage, now: float) -> Cover:
    """A watcher's word holds for LAPSE of its announcements, and never longer than LAPSE
    of ours: a message claiming hour-long announcements (a bug, or a forgery by any
    login that may publish there) must not keep a fleet on slow beats for hours."""
    return Cover(now + min(message.every, COVER_EVERY) * LAPSE, message.closes_within)


def covered(covers: Mapping[str, Cover], timing: Timing, now: float) -> bool:
    """Some watcher holds now, and every watcher that holds says the servers close a
    silent connection no later than our own silence would make us suspect (watchers
    that disagree, one having read the servers before a reload, count as the slowest:
    a node does not flap between paces with them)."""
    holding = [c.closes_within for c in covers.values() if now < c.until]
    return bool(holding) and max(holding) <= timing.interval * timing.suspect_intervals


def beat_interval(covers: Mapping[str, Cover], timing: Timing, slow: float, now: float) -> float:
    """Seconds until our next heartbeat: `slow` while covered (never faster than the
    timing's own interval; 0 turns slow beats off), the timing's interval otherwise."""
    if slow > 0 and covered(covers, timing, now):
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
        self.covers: dict[str, Cover] = {}  # by watcher
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
        return beat_interval(self.covers, self._timing, slow, self._clock.monotonic())

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
        self.covers = {w: c for w, c in self.covers.items() if now < c.until}
        self.covers[message.watcher] = heard(message, now)
        self._recheck()

    def _recheck(self) -> None:
        """Decide again, and wake again when the latest word runs out. A timer may fire
        a little early (uvloop's tick is a millisecond): then it is simply armed again."""
        now = self._clock.monotonic()
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        if self.covers:
            ends = max(c.until for c in self.covers.values())
            if ends > now:
                loop = asyncio.get_running_loop()
                self._lapse = loop.call_later(ends - now + 0.001, self._recheck)
        state = covered(self.covers, self._timing, now)
        if state != self._covered:
            self._covered = state
            log.info("presence coverage %s", "begins" if state else "ended")
            for listener in self._listeners:
                listener(state)
