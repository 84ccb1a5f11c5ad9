"""Who is in the mesh right now, asked from outside it: sync, then collect heartbeats."""

from __future__ import annotations

import asyncio

from mesh import clock, subjects
from mesh.bus import Bus, Delivery
from mesh.errors import InvalidMessage
from mesh.membership import view as membership
from mesh.messages import Sync, decode, encode
from mesh.timing import Timing


class Watch:
    """A view kept from outside the mesh: every heartbeat and leave folded in as it comes."""

    def __init__(self, timing: Timing) -> None:
        self.view = membership.View(timing)

    async def start(self, bus: Bus, *, asker: str) -> None:
        """Listen, then ask every node to heartbeat now (`bus` must be connected)."""
        await bus.subscribe(subjects.HEARTBEATS, self._fold)
        await bus.subscribe(subjects.LEAVES, self._fold)
        await bus.flush(2.0)  # the subscriptions exist before anyone answers
        await bus.publish(subjects.SYNC, encode(Sync(node=asker)))

    def current(self, now: float) -> membership.View:
        """The view with silent members expired as of `now`."""
        self.view, _ = membership.tick(self.view, now)
        return self.view

    async def _fold(self, delivery: Delivery) -> None:
        try:
            message = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return
        self.view, _ = membership.apply(self.view, message, clock.monotonic())


async def census(bus: Bus, timing: Timing, wait: float, *, asker: str) -> membership.View:
    """The view a node would have after `wait` seconds, built from everyone's answers.

    `bus` must be connected; every node answers a sync with its heartbeat at once, so a
    fraction of an interval is enough on a healthy mesh.
    """
    watch = Watch(timing)
    await watch.start(bus, asker=asker)
    await asyncio.sleep(wait)
    return watch.view


def live(view: membership.View) -> dict[str, str]:
    """Instance -> role of every node that is alive or draining (not suspect, gone or left)."""
    return {
        m.instance: m.record.role
        for m in view.members.values()
        if m.state in (membership.State.ALIVE, membership.State.DRAINING)
    }
