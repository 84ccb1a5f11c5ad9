"""`mesh nats creds` and `mesh nats setup`: NATS for a mesh with least-privilege users."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from mesh import clock, config, subjects
from mesh.bus import NatsBus, events
from mesh.config import Settings
from mesh.forwarding.policy_feed import bucket
from mesh.security import natscreds


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("nats", help="NATS for a secure mesh: users, certificates, setup")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    creds = verbs.add_parser(
        "creds", help="write a NATS CA, server certificate, and an NKey + certificate per role"
    )
    creds.add_argument("--out", required=True, help="folder to write into (its CA is kept)")
    creds.add_argument(
        "--service", action="append", default=[], help="a service whose agents get a user"
    )
    creds.add_argument(
        "--gateway", action="append", default=None, help="a gateway name (default: gateway)"
    )
    creds.add_argument(
        "--host",
        action="append",
        default=None,
        help="a name or address clients dial NATS at (default: 127.0.0.1 and localhost)",
    )
    creds.add_argument(
        "--days",
        type=int,
        default=natscreds.DEFAULT_DAYS,
        help=f"certificate lifetime in days ({natscreds.DEFAULT_DAYS})",
    )
    creds.set_defaults(func=_creds)
    setup = verbs.add_parser(
        "setup",
        parents=[common],
        help="create the event stream and the policy bucket (admin credentials)",
    )
    setup.set_defaults(func=_setup)


def _creds(args: argparse.Namespace) -> int:
    wanted = natscreds.roles(args.service, args.gateway or ["gateway"])
    now = datetime.fromtimestamp(clock.wall(), UTC)
    hosts = args.host or ["127.0.0.1", "localhost"]
    out = Path(args.out).resolve()
    found = natscreds.write(out, wanted, hosts=hosts, now=now, days=args.days)
    print(f"NATS server: nats-server -c {out / 'nats.conf'} -js -sd DIR")
    print("then, once, with the admin's credentials: mesh nats setup")
    print("each process loads its role's settings (paths only, no secret in them):")
    for name in found:
        print(f"  {name:<24} set -a; . {out / (name + '.env')}; set +a")
    return 0


def _setup(args: argparse.Namespace) -> int:
    asyncio.run(set_up(config.load(nats_url=args.nats_url)))
    print(f"{subjects.EVENTS_STREAM} stream and {subjects.POLICY_BUCKET} bucket ready")
    return 0


async def set_up(settings: Settings) -> None:
    """What only the admin may create: the event stream and the policy bucket."""
    bus = NatsBus(settings, name="mesh-nats-setup")
    try:
        await bus.start(wait=5.0)
        await events.set_up(bus, settings)
        await bucket(bus).open(history=subjects.POLICY_HISTORY)
    finally:
        await bus.close()
