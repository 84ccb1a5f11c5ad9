"""`mesh tap`: a live stream of request records from every gateway and agent, over NATS."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
from typing import Any, get_args

import msgspec

from mesh import cli, config, durations, subjects
from mesh.bus import Delivery, NatsBus
from mesh.errors import BusError, ConfigError, InvalidMessage
from mesh.messages import (
    RequestRecord,
    StatusClass,
    TapFilter,
    TapOpen,
    TapRecords,
    decode,
    encode,
)

# Nodes forget a tap this long after its last announcement: a killed `mesh tap` costs
# the data plane nothing after it. The tap announces itself again every RENEW_EVERY,
# which is also how a node that starts while the tap is open learns of it (within that
# time): nodes asking on start would need every tap to answer requests, a second
# protocol and a grant to answer for the monitor role, to save a few seconds of records.
TTL = 10.0
RENEW_EVERY = 3.0
# How long to wait for NATS before giving up with one line.
CONNECT_WAIT = 5.0


# What each filter flag takes, in people's words: the nodes check the same (TapFilter).
FILTER_FLAGS = {
    "service": ("--service", "a service name: letters, digits, '_' and '-' (1 to 128)"),
    "route": ("--route", "a route name: letters, digits, '_' and '-' (1 to 128)"),
    "path_prefix": (
        "--path",
        "a path starting with '/', in ASCII without spaces or '?' (%-encode the rest),"
        " up to 1024 characters, e.g. /api/",
    ),
    "method": ("--method", "a method in letters, e.g. GET"),
}


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "tap",
        # No timing for a preset, no logging to set (the bus's rare warnings show as is).
        parents=[cli.common_options("--nats-url")],
        help="live request records from every gateway and agent (filtered, sampled)",
    )
    parser.add_argument("--service", help="only requests routed to this service")
    parser.add_argument("--route", help="only requests this route matched")
    parser.add_argument("--path", dest="path_prefix", help="only paths starting with this")
    parser.add_argument("--status", choices=get_args(StatusClass), help="only this status class")
    parser.add_argument("--method", help="only this method, e.g. GET")
    parser.add_argument(
        "--sample", type=_share, default=1.0, help="share of the matching requests sent (1)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per record")
    parser.add_argument("--max", type=int, default=None, help="stop after this many records")
    parser.add_argument(
        "--duration",
        type=durations.argument,
        default=None,
        help="stop after this long, e.g. 30s (default: until Ctrl-C)",
    )
    parser.set_defaults(func=_tap)


def _share(text: str) -> float:
    """An argparse type: a share of requests, above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share in (0, 1], e.g. 0.1")
    return value


def announcement(args: argparse.Namespace, tap_id: str) -> TapOpen:
    """The tap's announcement from its flags; a bad filter is a ConfigError saying which."""
    wanted: dict[str, Any] = {"status": args.status}  # argparse took only a class
    for name, (flag, takes) in FILTER_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if name == "method":
            value = value.upper()
        try:  # one field at a time through the nodes' own checks: each error names its flag
            msgspec.convert({name: value}, TapFilter)
        except msgspec.ValidationError:
            raise ConfigError(f"{flag} {value!r}: give {takes}") from None
        wanted[name] = value
    return TapOpen(id=tap_id, filter=TapFilter(**wanted), sample=args.sample, ttl=TTL)


def line(record: RequestRecord) -> str:
    """One record as a person reads it."""
    upstream = record.instance or "-"
    # A service calling through its agent's proxy sent an absolute URL: shown as it came.
    url = record.authority + record.path if record.path[:1] == "/" else record.path
    return (
        f"{record.time[11:23]} {record.node:<24} {record.method} {url}"
        f" {record.status} {record.flags} {record.duration_ms:.1f}ms {upstream}"
        f" attempts={record.attempts} id={record.request_id or '-'}"
    )


class Tap:
    """Shows the records of one tap as they arrive; counts what the nodes' caps dropped."""

    def __init__(self, as_json: bool, most: int | None) -> None:
        self.as_json = as_json
        self.most = most
        self.shown = 0
        self.dropped = 0
        self.refused_by: set[str] = set()
        self.announced = False
        self.enough = asyncio.Event()

    async def receive(self, delivery: Delivery) -> None:
        try:
            batch = decode(delivery.subject, delivery.data)
        except InvalidMessage as exc:
            print(f"# {exc}", file=sys.stderr)
            return
        if not isinstance(batch, TapRecords):
            return
        if batch.refused:
            if batch.node not in self.refused_by:  # it says so at each renewal
                self.refused_by.add(batch.node)
                why = batch.why or (
                    "it keeps as many open as it may (MESH_TAP_MAX_OPEN); "
                    f"asked again every {RENEW_EVERY:g}s"
                )
                print(f"# {batch.node}: refused this tap, {why}", file=sys.stderr, flush=True)
            return
        self.refused_by.discard(batch.node)  # a slot came free at a renewal
        if batch.dropped:
            self.dropped += batch.dropped
            print(f"# {batch.node}: {batch.dropped} records dropped (its cap)", file=sys.stderr)
        for record in batch.records:
            if self.enough.is_set():
                return
            out = msgspec.json.encode(record).decode() if self.as_json else line(record)
            print(out, flush=True)
            self.shown += 1
            if self.most is not None and self.shown >= self.most:
                self.enough.set()


def _tap(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url)
    if args.max is not None and args.max < 1:
        raise ConfigError("--max: at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration: more than 0, e.g. 30s")
    tap_id = secrets.token_hex(4)
    opened = announcement(args, tap_id)
    goodbye = msgspec.structs.replace(opened, closing=True)
    tap = Tap(args.json, args.max)

    async def run() -> None:
        bus = NatsBus(settings, name="mesh-tap")
        try:
            await bus.start(wait=CONNECT_WAIT)
            # A goodbye no node knows of asks nothing of them, and tells whether these
            # credentials may open taps (BusRefused: one line, exit 2) before any do.
            await bus.publish(subjects.TAP, encode(goodbye))
            await bus.unless_refused(subjects.TAP, bus.flush(CONNECT_WAIT))
            await bus.subscribe(subjects.tapped(tap_id, "*"), tap.receive)
            loop = asyncio.get_running_loop()
            with contextlib.suppress(ValueError, RuntimeError):  # not on the main thread
                for stop in (signal.SIGINT, signal.SIGTERM):  # either way, a goodbye
                    loop.add_signal_handler(stop, tap.enough.set)
            end = None if args.duration is None else loop.time() + args.duration
            try:
                while not tap.enough.is_set():
                    left = RENEW_EVERY if end is None else min(RENEW_EVERY, end - loop.time())
                    if left <= 0:
                        break
                    await bus.publish(subjects.TAP, encode(opened))
                    if not tap.announced:  # what a script waits for before sending requests
                        tap.announced = True
                        said = f"# tap {tap_id} announced to every node"
                        print(said, file=sys.stderr, flush=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(tap.enough.wait(), left)
            finally:
                with contextlib.suppress(BusError):  # else the nodes forget it after TTL
                    await bus.publish(subjects.TAP, encode(goodbye))
                    await bus.flush(1.0)
        finally:
            await bus.close()

    asyncio.run(run())
    refused = f", refused by {len(tap.refused_by)} nodes" if tap.refused_by else ""
    print(
        f"# {tap.shown} records shown, {tap.dropped} dropped over the nodes' caps{refused}",
        file=sys.stderr,
    )
    return 0
