"""Presence: the NATS server's word that a node's connection closed, passed on as `gone`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable
from typing import Literal

import msgspec

from mesh import subjects
from mesh.bus import Bus, Delivery, NatsBus
from mesh.config import Settings
from mesh.errors import BusError, BusRefused, ConfigError
from mesh.membership import pings
from mesh.membership.connection_names import named
from mesh.membership.coverage import COVER_EVERY
from mesh.messages import Coverage, Gone, encode
from mesh.metrics import Metrics
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class _Client(msgspec.Struct, frozen=True):
    id: int
    name: str = ""
    user: str | None = None  # the login: a user name, or an NKey's public key
    nkey: str | None = None


class _Server(msgspec.Struct, frozen=True):
    id: str


class Advisory(msgspec.Struct, frozen=True):
    """The fields natsmesh reads of a client_connect / client_disconnect advisory."""

    server: _Server
    client: _Client
    reason: str = ""

    @property
    def login(self) -> str:
        return self.client.nkey or self.client.user or ""


_advisory = msgspec.json.Decoder(Advisory)
Connection = tuple[str, int]  # (server id, client id): unique across a cluster
Verdict = Literal["gone", "moved", "impostor"]
PROBE_WAIT = 2.0  # seconds for the server's word of our own probe connection at start
SETTINGS_WAIT = 0.5  # seconds for the servers' answers about their pings
SETTINGS_AGE = 60.0  # seconds before they are asked again (an operator may reload one)
MAX_CLOSES_WITHIN = 3600.0  # seconds: beyond, coverage would mean nothing (and not decode)


class _Held(msgspec.Struct):
    login: str  # whose connection first claimed the name: only its closes count
    open: set[Connection]


class Connections:
    """The open connections under each node name, as the advisories told them.

    A name belongs to the login whose connection claimed it first (a node connects
    before anyone can learn its incarnation, which only its own heartbeats carry): a
    connection of another login under that name (another service's credentials,
    naming a node to have it marked gone) is an impostor, and its close says nothing.
    A node is gone when its last open connection closes, not when an older one it
    replaced (moving to another NATS node) does. A name never seen connecting (the
    watcher started after it) is believed on its close: heartbeats correct a lie.
    """

    def __init__(self) -> None:
        self._names: dict[str, _Held] = {}

    def connected(self, name: str, connection: Connection, login: str) -> bool:
        """False for an impostor's connection."""
        held = self._names.setdefault(name, _Held(login, set()))
        if held.login != login:
            return False
        held.open.add(connection)
        return True

    def closed(self, name: str, connection: Connection, login: str) -> Verdict:
        held = self._names.get(name)
        if held is None:
            return "gone"
        if held.login != login:
            return "impostor"
        held.open.discard(connection)
        if held.open:
            return "moved"
        del self._names[name]
        return "gone"

    def forget(self) -> None:
        """Our own connection was away: advisories were missed, so nothing is known."""
        self._names.clear()


def system_settings(settings: Settings) -> Settings:
    """`settings` logging in as the presence user (the system account) instead: the
    same servers and TLS, its own credentials only."""
    return settings.model_copy(
        update={
            "nats_user": settings.presence_user,
            "nats_password": settings.presence_password,
            "nats_token": None,
            "nats_nkey_seed": settings.presence_nkey_seed,
            "nats_creds": None,
        }
    )


class Presence:
    """Hears the server's connect and disconnect advisories for the mesh's account, and
    publishes `gone` for a node whose connection closed. Any number of nodes may hold
    one: each publishes the same news, and a view folds the second copy into nothing."""

    def __init__(self, settings: Settings, bus: Bus, *, node: str, metrics: Metrics) -> None:
        self._bus = bus
        self._node = node
        self._settings = settings
        self._account = settings.presence_account
        self._probe: tuple[str, asyncio.Event] | None = None
        try:
            self._system = NatsBus(system_settings(settings), name=f"presence:{node}")
        except ConfigError as exc:  # a seed file it cannot read, named as it was given
            raise ConfigError(_ours(str(exc))) from None
        self._connections = Connections()
        self._announcing: asyncio.Task[None] | None = None
        self.closes_within: float | None = None  # what the servers' pings promise
        self.unreadable = False  # the last try to read them failed (warned once)
        self.outcomes: collections.Counter[str] = collections.Counter()
        metrics.counter(
            "mesh_presence_advisories",
            "Connection closes the NATS server reported, by what this node made of them: "
            "gone (published), moved (the node has another open connection), impostor (a "
            "connection of another login under a node's name), foreign (no mesh node's "
            "name), invalid.",
            ("outcome",),
            self._counts,
        )

    def _counts(self) -> Iterable[tuple[tuple[str, ...], float]]:
        return [((outcome,), float(n)) for outcome, n in self.outcomes.items()]

    async def start(self) -> None:
        """Log in to the system account (refused credentials: BusRefused) and listen."""
        try:
            await self._system.start()
        except BusRefused as exc:
            raise BusRefused(_ours(f"the presence login: {exc}")) from None
        for what, handler in (("CONNECT", self._on_connect), ("DISCONNECT", self._on_close)):
            await self._system.subscribe(subjects.connections(self._account, what), handler)
        self._system.on_state(self._on_system_state)
        if self._system.connected:  # else NATS is away: the node's own start says so
            await self._hears_advisories()
        self._announcing = asyncio.create_task(self._announce_forever(), name="coverage")

    async def _hears_advisories(self) -> None:
        """Connect once as this node and expect the server's word of it. A login that
        hears none (not a system-account user, or a server without accounts, which takes
        any login) would leave presence silently off: a ConfigError instead."""
        name = f"presence-probe:{self._node}"
        self._probe = (name, asyncio.Event())
        probe = NatsBus(self._settings, name=name)
        try:
            await probe.start(wait=PROBE_WAIT)
            await asyncio.wait_for(self._probe[1].wait(), PROBE_WAIT)
        except (TimeoutError, BusError):
            raise ConfigError(
                f"MESH_PRESENCE_*: this login hears no connect advisories of account "
                f"{self._account} within {PROBE_WAIT:g} s (not a system-account user, or a "
                "server without accounts?)"
            ) from None
        finally:
            self._probe = None
            await probe.close()

    async def stop(self) -> None:
        await cancel_and_wait(self._announcing)
        await self._system.close()

    async def _announce_forever(self) -> None:
        """While we hear advisories, say so (messages.Coverage), with the servers' own
        figure for how soon they close a silent client: nodes decide from it whether
        their silence is timed well enough without their heartbeats."""
        asked = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if self._system.connected:
                if self.closes_within is None or loop.time() - asked >= SETTINGS_AGE:
                    asked = loop.time()
                    await self._read_server_settings()
                if self.closes_within is not None and self.closes_within <= MAX_CLOSES_WITHIN:
                    await self._announce(self.closes_within)
            await asyncio.sleep(COVER_EVERY)

    async def _read_server_settings(self) -> None:
        answers: list[bytes] = []
        with contextlib.suppress(BusError):
            answers = await self._system.gather(subjects.SERVER_SETTINGS, b"", SETTINGS_WAIT)
        known = pings.closes_within(answers) if answers else None
        if known is None and not self.unreadable:
            log.warning("presence: no NATS server's ping settings readable: no coverage")
        self.unreadable = known is None
        self.closes_within = known

    async def _announce(self, closes_within: float) -> None:
        coverage = Coverage(watcher=self._node, closes_within=closes_within, every=COVER_EVERY)
        with contextlib.suppress(BusError):  # our own NATS is away: nodes beat faster
            await self._bus.publish(subjects.COVERAGE, encode(coverage))

    def _on_system_state(self, connected: bool) -> None:
        if connected:  # advisories sent while we were away are lost: what we held is stale
            self._connections.forget()
            self.closes_within = None  # and the servers may be others: ask again

    def _read(self, delivery: Delivery) -> Advisory | None:
        try:
            return _advisory.decode(delivery.data)
        except msgspec.DecodeError:
            self.outcomes["invalid"] += 1
            return None

    async def _on_connect(self, delivery: Delivery) -> None:
        advisory = self._read(delivery)
        if advisory is None:
            return
        if self._probe is not None and advisory.client.name == self._probe[0]:
            self._probe[1].set()
        if named(advisory.client.name) is not None:
            name, login = advisory.client.name, advisory.login
            if not self._connections.connected(name, _connection(advisory), login):
                self.outcomes["impostor"] += 1

    async def _on_close(self, delivery: Delivery) -> None:
        advisory = self._read(delivery)
        if advisory is None:
            return
        claim = named(advisory.client.name)
        if claim is None:
            self.outcomes["foreign"] += 1
            return
        verdict = self._connections.closed(
            advisory.client.name, _connection(advisory), advisory.login
        )
        if verdict != "gone":
            self.outcomes[verdict] += 1
            return
        gone = Gone(
            service=claim.service,
            instance=claim.instance,
            incarnation=claim.incarnation,
            reason=advisory.reason[:128],
            witness=self._node,
        )
        self.outcomes["gone"] += 1
        with contextlib.suppress(BusError):  # our own NATS is away: heartbeats will tell
            await self._bus.publish(subjects.gone(claim.service, claim.instance), encode(gone))


def _ours(text: str) -> str:
    """A connection error's text naming the presence settings it came from."""
    for login in ("USER", "PASSWORD", "NKEY_SEED"):
        text = text.replace(f"MESH_NATS_{login}", f"MESH_PRESENCE_{login}")
    return text


def _connection(advisory: Advisory) -> Connection:
    return advisory.server.id, advisory.client.id
