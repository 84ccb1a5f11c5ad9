"""A node's subscriptions per followed service: subscribe and sync on want, undo on drop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from mesh import subjects
from mesh.bus import Bus, Handler
from mesh.errors import BusError
from mesh.membership.interest import Interest
from mesh.messages import Sync, encode

log = logging.getLogger(__name__)

# Subjects that hear one service (or `*`, every service), for a handler that takes them.
Subjects = Callable[[str], list[str]]

# A sync is sent once the subscriptions are; NATS confirms both within this (flush).
_FLUSH_WITHIN = 1.0


class Following:
    """Every service (`everything`), or those wanted: by a call, or pinned by a policy.

    Each wanted service gets, for every registered handler, the subscriptions it names
    for that service, then a sync on mesh.v1.sync.<service> so that its nodes answer
    with their records at once. Concurrent wants of one service share one subscription.
    """

    def __init__(self, bus: Bus, *, node: str, everything: bool, idle: float) -> None:
        self._bus = bus
        self._node = node
        self.everything = everything
        self.interest = Interest(idle)
        self._handlers: list[tuple[Subjects, Handler]] = []
        self._pending: dict[str, asyncio.Task[None]] = {}

    def add(self, subjects_of: Subjects, handler: Handler) -> None:
        """Deliver what `subjects_of(service)` hears to `handler`, for each service
        followed from now on (register before start)."""
        self._handlers.append((subjects_of, handler))

    async def start(self) -> None:
        if self.everything:
            for subjects_of, handler in self._handlers:
                for subject in subjects_of("*"):
                    await self._bus.subscribe(subject, handler)

    def interested(self, service: str) -> bool:
        return self.everything or self.interest.follows(service)

    async def want(self, service: str, now: float) -> None:
        """Follow `service`: returns once NATS holds its subscriptions and took the sync."""
        if self.everything:
            return
        if self.interest.want(service, now):
            self._begin(service)
        pending = self._pending.get(service)
        if pending is not None:
            await asyncio.shield(pending)

    async def pin(self, services: Iterable[str], now: float) -> None:
        """Follow exactly these for as long as they are pinned (policy `preload`)."""
        if self.everything:
            return
        for service in self.interest.pin(services, now):
            self._begin(service)
        await asyncio.gather(*(asyncio.shield(task) for task in list(self._pending.values())))

    async def drop(self, service: str) -> bool:
        """Stop following `service`; False when it was not followed."""
        if self.everything or not self.interest.follows(service):
            return False
        pending = self._pending.get(service)
        if pending is not None:
            await asyncio.shield(pending)
        await self._forget(service)
        return True

    def idle(self, now: float) -> list[str]:
        return [] if self.everything else self.interest.idle_ones(now)

    async def sync(self) -> None:
        """Ask again, after a reconnect: everyone, or each followed service's nodes."""
        if self.everything:
            await self._ask(subjects.SYNC)
        else:
            for service in list(self.interest.followed):
                await self._ask(subjects.sync(service))

    async def ask(self, service: str) -> None:
        """Ask `service`'s nodes for their records now (a record this node missed)."""
        await self._ask(subjects.sync(service))

    def _begin(self, service: str) -> None:
        task = asyncio.get_running_loop().create_task(self._subscribe(service))
        self._pending[service] = task
        task.add_done_callback(lambda _: self._settled(service, task))

    def _settled(self, service: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(service) is task:
            del self._pending[service]

    async def _subscribe(self, service: str) -> None:
        try:
            for subjects_of, handler in self._handlers:
                for subject in subjects_of(service):
                    await self._bus.subscribe(subject, handler)
        except BusError as exc:  # half-subscribed is deaf for good: the next want tries again
            log.warning("cannot follow %s now: %s", service, exc)
            await self._forget(service)
            return
        await self._ask(subjects.sync(service))
        with contextlib.suppress(BusError):  # away: the reconnect's sync asks again
            await self._bus.flush(_FLUSH_WITHIN)

    async def _forget(self, service: str) -> None:
        self.interest.forget(service)
        for subjects_of, handler in self._handlers:
            for subject in subjects_of(service):
                await self._bus.unsubscribe(subject, handler)

    async def _ask(self, subject: str) -> None:
        with contextlib.suppress(BusError):
            await self._bus.publish(subject, encode(Sync(node=self._node)))
