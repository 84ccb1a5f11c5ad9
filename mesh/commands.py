"""`mesh members`, `mesh config` and `mesh nats`: the mesh from outside it."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from mesh import cli, clock, config, durations, subjects
from mesh.addresses import redact_url
from mesh.bus import NatsBus, setup
from mesh.errors import ConfigError
from mesh.membership import roster
from mesh.membership import view as membership
from mesh.membership.census import census
from mesh.security import natscreds


def register_members(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "members",
        parents=[common],
        help="show the live view (a * after the state: gets no new requests)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--wait",
        type=durations.argument,
        default=None,
        help="how long to collect heartbeats, e.g. 3s (default 1.5 intervals)",
    )
    parser.set_defaults(func=_members)


def register_config(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("config", help="print every setting, its value and meaning")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table of the defaults")
    parser.set_defaults(func=_config)


def _members(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url, preset=args.preset)
    timing = settings.timing
    wait = args.wait if args.wait is not None else timing.interval * 1.5

    async def collect() -> membership.View:
        bus = NatsBus(settings, name="mesh-members")
        try:
            await bus.start(wait=5.0)
            return await census(bus, timing, wait, asker="mesh-members")
        finally:
            await bus.close()

    view = asyncio.run(collect())
    rows = roster.rows(view, clock.monotonic())
    if args.json:
        print(msgspec.json.encode(rows).decode())
    else:
        print(roster.table(rows) if rows else "no members")
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.markdown:
        print("| setting | default | meaning |\n|---|---|---|")
        for name, field in config.Settings.model_fields.items():
            default = "" if field.default is None else f"`{field.default}`"
            print(f"| `MESH_{name.upper()}` | {default} | {field.description} |")
        return 0
    settings = config.load()
    for name, field in config.Settings.model_fields.items():
        value = getattr(settings, name)  # a secret is a SecretStr: it prints as stars
        if name == "nats_url":
            value = redact_url(value)
        print(f"MESH_{name.upper():<24} {value!s:<28} {field.description}")
    return 0


def register_nats(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
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
        parents=[cli.common_options("--nats-url")],
        help="create the event stream and the policy bucket (admin credentials)",
    )
    setup.set_defaults(func=_setup)


def _creds(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise ConfigError("--days: at least 1")
    wanted = natscreds.roles(args.service, args.gateway or ["gateway"])
    now = datetime.fromtimestamp(clock.wall(), UTC)
    hosts = args.host or ["127.0.0.1", "localhost"]
    out = Path(args.out).resolve()
    found = natscreds.write(out, wanted, hosts=hosts, now=now, days=args.days)
    print(f"NATS server: nats-server -c {out / 'nats.conf'} -js -sd DIR")
    print("then, once, with the admin's credentials: mesh nats setup")
    print("each process loads its role's settings (paths only, no secret in them):")
    for name, creds in found.items():
        also = "   # gateways, after their own" if creds.presence else ""
        print(f"  {name:<24} set -a; . {out / (name + '.env')}; set +a{also}")
    return 0


# A cluster started a moment ago may still elect its JetStream leader: worth a short wait.
SETUP_WAIT = 10.0


def _setup(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url)
    asyncio.run(setup.set_up(settings, wait=SETUP_WAIT))
    replicas = f" ({settings.nats_replicas} replicas)" if settings.nats_replicas > 1 else ""
    print(f"{subjects.EVENTS_STREAM} stream and {subjects.POLICY_BUCKET} bucket ready{replicas}")
    return 0
