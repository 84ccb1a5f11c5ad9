"""The `mesh` command: built-in subcommands plus those the installed packages register."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import entry_points

import msgspec

from mesh import clock, config, roster, runtime, subjects
from mesh import view as membership
from mesh.bus import Delivery, NatsBus
from mesh.errors import InvalidMessage, MeshError
from mesh.messages import Sync, decode, encode


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--nats-url", help="NATS server URL (setting nats_url)")
    common.add_argument(
        "--preset", choices=["lan", "wan", "local"], help="failure-detection timing preset (lan)"
    )
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return common


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mesh", description="natsmesh: a service mesh for HTTP services on NATS"
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    from mesh import up  # the launcher imports subprocess machinery only when needed

    up.register(commands, common)

    members = commands.add_parser("members", parents=[common], help="show the live view")
    members.add_argument("--json", action="store_true", help="print JSON instead of a table")
    members.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to collect heartbeats (default 1.5 intervals)",
    )
    members.set_defaults(func=_members)

    show = commands.add_parser("config", help="print every setting, its value and meaning")
    show.set_defaults(func=_config)

    demo = commands.add_parser("demo-service", parents=[common], help="run the demo HTTP service")
    demo.add_argument("--service", default="hello")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, required=True)
    demo.add_argument("--instance-id", default="")
    demo.set_defaults(func=_demo)

    for entry in sorted(entry_points(group="natsmesh.commands"), key=lambda e: e.name):
        entry.load()(commands, common)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MeshError as exc:
        print(f"mesh {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _members(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url, preset=args.preset)
    timing = settings.timing
    wait = args.wait if args.wait is not None else timing.interval * 1.5

    async def collect() -> membership.View:
        bus = NatsBus(settings, name="mesh-members")
        view = membership.View(timing)

        async def fold(delivery: Delivery) -> None:
            nonlocal view
            try:
                message = decode(delivery.subject, delivery.data)
            except InvalidMessage:
                return
            view, _ = membership.apply(view, message, clock.monotonic())

        try:
            await bus.start(wait=5.0)
            await bus.subscribe(subjects.HEARTBEATS, fold)
            await bus.subscribe(subjects.LEAVES, fold)
            await bus.flush(2.0)
            await bus.publish(subjects.SYNC, encode(Sync(node="mesh-members")))
            await asyncio.sleep(wait)
        finally:
            await bus.close()
        return view

    view = asyncio.run(collect())
    rows = roster.rows(view, clock.monotonic())
    if args.json:
        print(msgspec.json.encode(rows).decode())
    else:
        print(roster.table(rows) if rows else "no members")
    return 0


def _config(args: argparse.Namespace) -> int:
    settings = config.load()
    for name, field in config.Settings.model_fields.items():
        value = getattr(settings, name)
        print(f"MESH_{name.upper():<24} {value!s:<28} {field.description}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mesh import demo

    runtime.setup_logging(args.log_level or "info", as_json=False)
    return demo.main(args.service, args.host, args.port, args.instance_id)
