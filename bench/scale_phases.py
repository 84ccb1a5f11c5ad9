"""The measured phases of bench.scale: a quiet window, a view filling, a loss spreading."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.cpu import process_cpu
from bench.natsmon import Connz, connz, traffic_of
from bench.simulator import CONNECTION as SIMULATOR
from bench.usage import cpu_shares, resident_bytes
from bench.views import alive_at, held, losses_seen
from mesh.node.children import Child

POLL = 0.05  # seconds between polls of the admin ports while timing


@dataclass(frozen=True)
class Observer:
    label: str
    child: Child
    admin: int
    connection: str  # the start of its NATS connection's name: role:service:


def quiet_window(
    observers: Sequence[Observer], others: Mapping[str, int], monitor: int, seconds: float
) -> dict[str, Any]:
    """Over `seconds` with no requests: each observer's CPU share, the NATS traffic it
    received and sent, its resident memory at the end; `others` (label -> pid) CPU only."""
    before = connz(monitor)
    started = time.monotonic()
    cpu = cpu_shares({**{o.label: o.child.pid for o in observers}, **others}, seconds)
    after = connz(monitor)
    wall = time.monotonic() - started
    return {
        "seconds": wall,
        "load_average": os.getloadavg()[0],
        "cpu": cpu,
        "traffic": {o.label: _rates(before, after, o.connection, wall) for o in observers},
        # What the simulators published: the fleet beat as often as it should (or not).
        "fleet_sent_msgs": sum(
            rates.sent_msgs
            for name in after
            if name.startswith(SIMULATOR)
            and (rates := traffic_of(before, after, name, wall)) is not None
        ),
        "rss": {o.label: resident_bytes(o.child.pid) for o in observers},
        # Bytes the server holds for it, not yet written: a reader falling behind.
        "pending_bytes": {
            o.label: after[name]["pending_bytes"]
            for o in observers
            for name in after
            if name.startswith(o.connection)
        },
    }


def _rates(before: Connz, after: Connz, prefix: str, seconds: float) -> dict[str, float] | None:
    rates = traffic_of(before, after, prefix, seconds)
    return None if rates is None else asdict(rates)


def until_held(
    observer: Observer, fleet: Mapping[str, int], since: float, timeout: float, monitor: int
) -> dict[str, Any]:
    """Seconds from `since` until `observer`'s view holds every record of `fleet` alive
    (NaN: not within `timeout`); before that, until its NATS connection shows on the
    server's monitoring port and until its admin port first answers; the most it held."""
    want = sum(fleet.values())
    most, connected, answered = 0, math.nan, math.nan
    cpu_at_connection = math.nan  # the observer's CPU seconds then: its fill's own cost
    while time.monotonic() < since + timeout:
        if math.isnan(connected) and any(n.startswith(observer.connection) for n in connz(monitor)):
            connected = time.monotonic() - since
            cpu_at_connection = process_cpu(observer.child.pid or 0)
        try:
            count = held(alive_at(observer.admin), fleet)
        except OSError:  # not listening yet, or too busy to answer in time
            time.sleep(POLL)
            continue
        if math.isnan(answered):
            answered = time.monotonic() - since
        most = max(most, count)
        if count >= want:
            break
        time.sleep(POLL)
    full = time.monotonic() - since if most >= want else math.nan
    fill_cpu = process_cpu(observer.child.pid or 0) - cpu_at_connection
    return {
        "full_s": full,
        "connected_s": connected,
        "admin_s": answered,
        "held": most,
        "of": want,
        # CPU seconds the observer spent from its NATS connection to its full view: what
        # the fill costs it, without the wait for cores that the fleet's simulators and
        # the other gateway (both hearing every answer) take on this shared machine.
        "fill_cpu_s": fill_cpu if most >= want else math.nan,
    }


def silence(
    sims: Sequence[Child], observers: Sequence[Observer], lost: Mapping[str, int], timeout: float
) -> dict[str, float]:
    """Silence the victims in every simulator at once (SIGUSR1: no leave), then the
    seconds until each observer holds none of them alive (NaN: not within `timeout`, or
    its view could not be read before: too busy to answer)."""
    before: dict[str, dict[str, int]] = {}
    for o in observers:
        with contextlib.suppress(OSError):
            before[o.label] = alive_at(o.admin, timeout=30)
    struck = time.monotonic()
    for sim in sims:
        sim.signal(signal.SIGUSR1)
    seen: dict[str, float] = {}
    watched = [o for o in observers if o.label in before]
    while len(seen) < len(watched) and time.monotonic() < struck + timeout:
        for o in watched:
            if o.label in seen:
                continue
            try:
                if losses_seen(alive_at(o.admin), before[o.label], lost):
                    seen[o.label] = time.monotonic() - struck
            except OSError:
                pass  # too busy to answer: asked again next round
        time.sleep(POLL)
    return {o.label: seen.get(o.label, math.nan) for o in observers}
