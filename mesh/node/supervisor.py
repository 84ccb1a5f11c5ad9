"""Watching child processes: restart the dying ones with back-off, report the others' end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mesh.clock import monotonic
from mesh.node.children import CANNOT_START, Child, how_it_ended
from mesh.resilience.backoff import ceiling

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Restart:
    """A dead child comes back after `first` seconds, twice as long each time it died
    young (within `settled` seconds of its start), never longer than `cap`."""

    first: float = 1.0
    cap: float = 30.0
    settled: float = 10.0


@dataclass(slots=True)
class _Watched:
    child: Child
    restart: Restart | None
    started: float
    young_deaths: int = 0
    due: float | None = None  # when a dead child is started again


class Supervisor:
    """Watches children: restarts those given a Restart, reports the others' end.

    Children are (re)started on the thread that calls `start` and `poll`: the event
    loop's or the main one, as die-with-parent requires.
    """

    def __init__(self, *, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        self._watched: list[_Watched] = []

    def start(self, child: Child, restart: Restart | None = None) -> Child:
        child.start()
        return self.add(child, restart)

    def add(self, child: Child, restart: Restart | None = None) -> Child:
        """Watch a child that is already running."""
        self._watched.append(_Watched(child, restart, self._clock()))
        return child

    def poll(self) -> Child | None:
        """One look at every child: restart those due; the first that ended for good.

        A child ends for good when it has no Restart or exits with CANNOT_START.
        """
        now = self._clock()
        for watched in self._watched:
            child, restart = watched.child, watched.restart
            code = child.returncode
            if code is None:
                continue
            if restart is None or code == CANNOT_START:
                return child
            if watched.due is None:
                if now - watched.started >= restart.settled:
                    watched.young_deaths = 0
                delay = ceiling(watched.young_deaths, restart.first, restart.cap)
                watched.young_deaths += 1
                watched.due = now + delay
                log.warning("%s %s; restarting in %g s", child.label, how_it_ended(code), delay)
            elif now >= watched.due:
                try:
                    child.start()
                except OSError as exc:
                    log.error("%s cannot be restarted: %s", child.label, exc)
                    return child
                watched.started, watched.due = now, None
                log.warning("%s restarted (pid %d)", child.label, child.pid)
        return None

    async def watch(self, until: asyncio.Event, *, every: float = 0.2) -> Child | None:
        """Poll every `every` seconds until `until` is set (None) or a child ends for good."""
        while not until.is_set():
            ended = self.poll()
            if ended is not None:
                return ended
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), every)
        return None
