"""`mesh top`: every service's golden signals, live, from the nodes' load reports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

import msgspec

from mesh import cli, clock, config, durations, subjects
from mesh.bus import NatsBus
from mesh.errors import ConfigError
from mesh.membership.census import Watch
from mesh.membership.view import View
from mesh.observe import screen, traffic
from mesh.observe.loads import Loads

CONNECT_WAIT = 5.0  # seconds to reach NATS before giving up, as `mesh members`
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "top",
        parents=[cli.common_options("--nats-url", "--preset")],  # nothing here logs
        help="live golden signals per service (rate, success, p50/p99, in flight, instances)",
    )
    parser.add_argument("--service", default=None, help="this service's instances instead")
    parser.add_argument(
        "--interval",
        type=durations.argument,
        default=2.0,
        help="how often the table is redrawn, e.g. 1s (2s)",
    )
    parser.add_argument(
        "--wait",
        type=durations.argument,
        default=None,
        help="how long to collect heartbeats before the first table (default 1.5 intervals)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="print once and exit (so does the table when stdout is not a terminal)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON, a line per refresh until Ctrl-C, on a pipe too (--once: one line)",
    )
    parser.set_defaults(func=_top)


def render(
    view: View, loads: traffic.Loads, service: str | None, *, json: bool
) -> tuple[str, bool]:
    """What to print for `view` and the `loads` reported, and whether it shows anything
    (a service it knows)."""
    members = list(view.members.values())
    if service is None:
        services = traffic.services(members, loads)
        if json:
            return msgspec.json.encode({"services": services}).decode(), True
        return screen.services_table(services), True
    rows = traffic.instances(members, loads, service)
    if json:
        return msgspec.json.encode({"service": service, "instances": rows}).decode(), bool(rows)
    if not rows:
        return f"no instances of {service!r} (yet)", False
    return screen.instances_table(rows), True


def _top(args: argparse.Namespace) -> int:
    if args.service is not None and not subjects.is_valid_name(args.service):
        raise ConfigError(f"--service {args.service!r}: use letters, digits, '_' and '-' only")
    if args.interval <= 0:
        raise ConfigError("--interval: more than 0 s")
    settings = config.load(nats_url=args.nats_url, preset=args.preset)
    timing = settings.timing
    wait = args.wait if args.wait is not None else timing.interval * 1.5
    # The table is for eyes: redrawn on a terminal, printed once into a file or a pipe.
    # JSON is for programs, which read it as lines from a pipe: it streams unless --once.
    live = not args.once and (args.json or sys.stdout.isatty())

    async def watch() -> int:
        bus = NatsBus(settings, name="mesh-top")
        try:
            await bus.start(wait=CONNECT_WAIT)
            loads = Loads()
            await loads.listen(bus)  # before the sync that the nodes answer with theirs
            watching = Watch(timing)
            await watching.start(bus, asker="mesh-top")
            await asyncio.sleep(wait)
            if not live:
                view = watching.current(clock.monotonic())
                text, found = render(view, loads.latest, args.service, json=args.json)
                print(text)
                return 0 if found else 1
            stop = asyncio.Event()
            for ending in (signal.SIGINT, signal.SIGTERM):  # a script's kill ends it cleanly
                asyncio.get_running_loop().add_signal_handler(ending, stop.set)
            while not stop.is_set():
                view = watching.current(clock.monotonic())
                loads.retain(view.members)
                text, _ = render(view, loads.latest, args.service, json=args.json)
                if not args.json:
                    when = time.strftime("%H:%M:%S", time.localtime(clock.wall()))
                    heading = f"mesh top  {when}  (every {args.interval:g} s, Ctrl-C ends)"
                    text = f"{_CLEAR}{heading}\n\n{text}"
                if not _emit(text):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.interval)
            return 0
        finally:
            await bus.close()

    return asyncio.run(watch())


def _emit(text: str) -> bool:
    """Print `text` at once; False when the reader has gone (`mesh top --json | head -1`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would flush stdout into the closed pipe again at exit, and say so.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    return True
