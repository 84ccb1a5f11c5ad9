"""Who is in the mesh right now, asked from outside it: sync, then collect heartbeats."""

from __future__ import annotations

import asyncio

from mesh import clock, subjects
from mesh.bus import Bus, Delivery
from mesh.errors import InvalidMessage
from mesh.membership import view as membership
from mesh.messages import Sync, decode, encode
from mesh.timing import Timing


async def census(bus: Bus, timing: Timing, wait: float, *, asker: str) -> membership.View:
    """The view a node would have after `wait` seconds, built from everyone's answers.

    `bus` must be connected; every node answers a sync with its heartbeat at once, so a
    fraction of an interval is enough on a healthy mesh.
    """
    view = membership.View(timing)

    async def fold(delivery: Delivery) -> None:
        nonlocal view
        try:
            message = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return
        view, _ = membership.apply(view, message, clock.monotonic())

    await bus.subscribe(subjects.HEARTBEATS, fold)
    await bus.subscribe(subjects.LEAVES, fold)
    await bus.flush(2.0)  # the subscriptions exist before anyone answers
    await bus.publish(subjects.SYNC, encode(Sync(node=asker)))
    await asyncio.sleep(wait)
    return view


def live(view: membership.View) -> dict[str, str]:
    """Instance -> role of every node that is alive or draining (not suspect, gone or left)."""
    return {
        m.instance: m.record.role
        for m in view.members.values()
        if m.state in (membership.State.ALIVE, membership.State.DRAINING)
    }
