"""`mesh events tail`: the stored event log from a point in time, then what happens next."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import msgspec

from mesh import cli, clock, config, durations, subjects
from mesh.bus import Delivery, Handler, NatsBus
from mesh.errors import BusError, ConfigError, InvalidMessage
from mesh.messages import Event, decode
from mesh.observe.event_lines import line

# Without the stream, copies of one happening (one per observing node) arrive within
# seconds of each other: the ids of this many recent events are enough to fold them.
SEEN_IDS = 10_000


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "events",
        # No timing for a preset, no logging to set (the bus's rare warnings show as is).
        parents=[cli.common_options("--nats-url")],
        help="the mesh event log",
    )
    parser.add_argument("action", choices=["tail"], help="tail: print events, then follow")
    parser.add_argument(
        "--since",
        type=durations.argument,
        default=None,
        help="start this long ago: 30s, 10m, 2h, 1d (default: only new events)",
    )
    parser.add_argument(
        "--kind", default="*.*", help="event kind filter, e.g. instance.down or instance.* (all)"
    )
    parser.add_argument("--service", default="*", help="only this service's events (all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--for",
        dest="duration",
        type=durations.argument,
        default=None,
        help="stop after this long, e.g. 2s or 5m (default: until Ctrl-C)",
    )
    parser.set_defaults(func=_tail)


class Seen:
    """The ids of the last `size` events shown: a second copy of one of them is not."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._size = size
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest goes first

    def first_time(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]
        return True


class Printer:
    """Prints each event once: the first copy of an id, seen from `since` (epoch seconds)."""

    def __init__(self, *, since: float | None, as_json: bool) -> None:
        self._since = since
        self._json = as_json
        self._seen = Seen()

    async def __call__(self, delivery: Delivery) -> None:
        try:
            event = decode(delivery.subject, delivery.data)
        except InvalidMessage as exc:
            print(f"# {exc}", file=sys.stderr)
            return
        if not isinstance(event, Event) or not self._seen.first_time(event.id):
            return
        if self._since is not None and event.at < self._since:
            return  # stored in the window, but seen before it (published late)
        print(msgspec.json.encode(event).decode() if self._json else line(event), flush=True)


def _tail(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url)
    subject = events_filter(args.kind, args.service)
    since = None if args.since is None else clock.wall() - args.since

    async def tail() -> None:
        bus = NatsBus(settings, name="mesh-events")
        try:
            await bus.start(wait=5.0)
            await follow(bus, subject, since, Printer(since=since, as_json=args.json))
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        finally:
            await bus.close()

    asyncio.run(tail())
    return 0


async def follow(bus: NatsBus, subject: str, since: float | None, show: Handler) -> None:
    """Read the stored stream (one copy of each happening), from `since` or from now.

    The stream is read even for new events only: it is where copies are folded, by id,
    for as long as its duplicate window, a few milliseconds after the live subject.
    Without it (a NATS without JetStream, or no MESH_EVENTS yet), new events are read
    from the live subject and folded here, by the ids of recent events.
    """
    try:
        await bus.replay(subjects.EVENTS_STREAM, subject, since, show)
    except BusError as exc:
        if since is not None:
            raise
        print(
            f"# {subjects.EVENTS_STREAM} not readable ({exc}): following {subject}", file=sys.stderr
        )
        await bus.subscribe(subject, show)


def events_filter(kind: str, service: str) -> str:
    """The subject selecting events of `kind` about `service`, either of them `*`."""
    # Every kind is two tokens (family.what), so a service filter always sits in the third.
    tokens = kind.split(".")
    if len(tokens) != 2 or not all(t == "*" or subjects.is_valid_name(t) for t in tokens):
        raise ConfigError(f"--kind {kind!r}: give a kind (instance.down) or a family (instance.*)")
    if service != "*" and not subjects.is_valid_name(service):
        raise ConfigError(f"--service {service!r}: use letters, digits, '_' and '-' only")
    return f"{subjects.PREFIX}.events.{kind}.{service}"
