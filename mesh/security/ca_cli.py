"""`mesh ca init` creates the mesh CA; `mesh ca serve` signs certificates over NATS."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from mesh import cli, clock, config, durations, logs, subjects
from mesh.bus import Delivery, NatsBus
from mesh.bus.credentials import guarded
from mesh.config import Settings
from mesh.errors import BusError, ConfigError
from mesh.messages import CertReply
from mesh.security import pki, signer

log = logging.getLogger("mesh.ca")

CERT_FILE, KEY_FILE = "ca.crt", "ca.key"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("ca", help="the mesh CA: create it, sign service certificates")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        parents=[cli.common_options("--log-level")],
        help="create the mesh CA in a directory",
    )
    init.add_argument("--dir", help="where ca.crt and ca.key go (setting ca_dir)")
    init.add_argument("--trust-domain", help="SPIFFE trust domain (setting trust_domain)")
    init.add_argument("--days", type=int, default=3650, help="how long the CA lives (3650)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=_init)
    serve = actions.add_parser(
        "serve",
        parents=[cli.common_options("--nats-url", "--log-level")],
        help=f"sign certificates asked for on {subjects.CA_SIGN}",
    )
    serve.add_argument("--dir", help="the CA's directory (setting ca_dir)")
    serve.add_argument("--trust-domain", help="SPIFFE trust domain (setting trust_domain)")
    serve.add_argument(
        "--lifetime",
        type=durations.argument,
        help="lifetime of the certificates it signs (setting cert_lifetime, 24h)",
    )
    serve.set_defaults(func=_serve)


def _settings(args: argparse.Namespace, **more: object) -> Settings:
    settings = config.load(
        ca_dir=args.dir,
        trust_domain=args.trust_domain,
        log_level=args.log_level,
        **more,
    )
    logs.setup(settings.log_level, as_json=settings.log_json)
    return settings


def _init(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.days < 1:
        raise ConfigError("--days must be at least 1")
    folder = Path(settings.ca_dir)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not args.force:
        raise ConfigError(
            f"{existing[0]} already exists; --force replaces the CA "
            "(certificates it signed are then no longer trusted)"
        )
    create(folder, settings.trust_domain, datetime.fromtimestamp(clock.wall(), UTC), args.days)
    print(f"mesh CA for {settings.trust_domain} in {folder}: {CERT_FILE}, {KEY_FILE} (mode 0600)")
    return 0


def create(folder: Path, trust_domain: str, now: datetime, days: int) -> None:
    """A new mesh CA's certificate and key (mode 0600) in `folder`, replacing any there."""
    authority = pki.new_authority(f"natsmesh CA {trust_domain}", now, timedelta(days=days))
    pki.write_private(folder / KEY_FILE, pki.key_pem(authority.key))
    pki.write_public(folder / CERT_FILE, pki.cert_pem(authority.cert))


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args, nats_url=args.nats_url, cert_lifetime=args.lifetime)
    folder = Path(settings.ca_dir)
    authority = pki.load_authority(folder / CERT_FILE, folder / KEY_FILE)
    expires = authority.cert.not_valid_after_utc.timestamp()
    if expires <= clock.wall():
        raise ConfigError(f"the mesh CA in {folder} expired; `mesh ca init --force` makes one")

    if not guarded(settings):
        log.warning(
            "NATS without credentials or TLS: anyone who reaches it can ask this CA for "
            "any service's identity (give it the ca role's files of `mesh nats creds`)"
        )

    async def serve() -> int:
        # Not mesh.node.runtime: the security package sits below the node package.
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        bus = NatsBus(settings, name="mesh-ca")
        try:
            await bus.start(wait=5.0)
            await bus.subscribe(subjects.CA_SIGN, Signer(bus, authority, settings).answer)
            await bus.flush(2.0)
            log.info(
                "mesh CA signing for spiffe://%s on %s (certificates live %g s)",
                settings.trust_domain,
                subjects.CA_SIGN,
                settings.cert_lifetime,
            )
            await stop.wait()
        finally:
            await bus.close()
        return 0

    return asyncio.run(serve())


class Signer:
    """Answers each request; each refusal is logged with its cause and the running count."""

    def __init__(self, bus: NatsBus, authority: pki.Authority, settings: Settings) -> None:
        self._bus = bus
        self._authority = authority
        self._trust_domain = settings.trust_domain
        self._lifetime = timedelta(seconds=settings.cert_lifetime)
        self.signed = 0
        self.refused = 0

    async def answer(self, delivery: Delivery) -> None:
        if not delivery.reply:
            self.refused += 1
            log.warning("refused a request on %s without a reply subject", delivery.subject)
            return
        reply = signer.answer(
            self._authority,
            delivery.subject,
            delivery.data,
            trust_domain=self._trust_domain,
            now=datetime.fromtimestamp(clock.wall(), UTC),
            lifetime=self._lifetime,
        )
        self._count(delivery.subject, reply)
        try:
            await self._bus.publish(delivery.reply, msgspec.json.encode(reply))
        except BusError as exc:
            log.warning("could not answer on %s: %s", delivery.subject, exc)

    def _count(self, subject: str, reply: CertReply) -> None:
        if reply.error:
            self.refused += 1
            log.warning("refused on %s (%d refused so far): %s", subject, self.refused, reply.error)
        else:
            self.signed += 1
            log.info("signed on %s (%d signed so far)", subject, self.signed)
