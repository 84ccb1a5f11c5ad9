"""Every node's policy intake: watch the bucket, compile each revision, swap it in, acknowledge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, NatsBus, until_done
from mesh.bus.events import EventLog
from mesh.bus.kv import KvEntry, KvStore
from mesh.clock import Clock
from mesh.errors import BusError, BusRefused, BusTimeout, BusUnavailable, MeshError
from mesh.messages import Event, EventKind
from mesh.metrics import Metrics
from mesh.policy.decode import parse
from mesh.policy.model import KINDS, Document
from mesh.policy.model import key as key_of
from mesh.policy.problem import Problem
from mesh.policy.service import Service
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RETRY_OPEN = 2.0  # seconds between attempts to open a bucket nobody has created yet
_DETAIL = 128  # event detail values are bounded on the wire
_KIND = {kind.lower(): kind for kind in KINDS}  # a key's prefix -> the document's kind


class PolicyRejected(MeshError):
    """A revision that does not compile here; the node keeps the last good one."""


# Compiles a revision (PolicyRejected if it cannot) and swaps it in; a data plane that
# must load it first returns what to await, which swaps it in once that plane serves it
# (or raises PolicyRejected, leaving the old revision in place).
Compiler = Callable[[Mapping[str, Document]], Awaitable[None] | None]
EntryHandler = Callable[[KvEntry], Awaitable[None]]


class Watching(Protocol):
    """A running watch; `initial` is set once the current revisions were delivered."""

    initial: asyncio.Event

    async def stop(self) -> None: ...


class Revisions(Protocol):
    """Where the feed reads revisions: the policy bucket (a KvStore), or a test's own."""

    async def open(self) -> None: ...

    async def watch(self, handler: EntryHandler) -> Watching: ...


def bucket(bus: NatsBus) -> KvStore:
    """The policy bucket, not opened yet."""
    return KvStore(bus, subjects.POLICY_BUCKET)


class PolicyFeed:
    """Keeps `documents` equal to the newest revisions this node could compile."""

    def __init__(
        self,
        bus: Bus,
        source: Revisions,
        *,
        node: str,
        role: str,
        events: EventLog,
        metrics: Metrics,
        compile_and_swap: Compiler,
        defaults: Service,
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._node = node
        self._role = role
        self._events = events
        self._compile = compile_and_swap
        self._defaults = defaults  # fills what each stored Service document leaves out
        self.documents: dict[str, Document] = {}
        self.revisions: dict[str, int] = {}
        self._source = source
        self._watch: Watching | None = None
        self._task: asyncio.Task[None] | None = None
        self._resync = asyncio.Event()
        self.ready = asyncio.Event()  # the bucket's current revisions were applied once
        metrics.gauge(
            "mesh_policy_revision",
            "Revision of each policy applied here.",
            ("key",),
            self._revision_gauge,
        )

    def _revision_gauge(self) -> Iterable[tuple[tuple[str, ...], float]]:
        return [((key,), float(rev)) for key, rev in self.revisions.items()]

    async def start(self) -> None:
        self._bus.on_state(self._on_bus_state)
        self._task = asyncio.create_task(self._run(), name="policy-feed")

    def _on_bus_state(self, connected: bool) -> None:
        if connected:
            self._resync.set()  # a restarted server may have lost our watch's consumer

    async def _run(self) -> None:
        while True:
            try:
                await self._bus.wait_connected()
                await self._source.open()  # made by gateways and `mesh policy`
                await self._restart_watch()
                await self._resync.wait()
                self._resync.clear()
            except BusError as exc:
                if _passing(exc):
                    # A loaded server, a consumer placed on a node that just died: asked
                    # again; the node's wait for its policies (policy_wait) bounds it,
                    # rather than serving at once without the routes the bucket holds.
                    log.debug("policy bucket not answering yet: %s", exc)
                else:
                    self._serve_without(exc)
                await asyncio.sleep(RETRY_OPEN)
            except Exception:
                # Whatever went wrong, a node that stops taking policies must say so and
                # try again: it would otherwise silently serve an old revision forever.
                log.exception("policy watch failed; retrying")
                await asyncio.sleep(RETRY_OPEN)

    def _serve_without(self, error: BusError) -> None:
        """No bucket to read (none made yet, JetStream off, not allowed): applies nothing
        and serves on; a mesh without policies uses its defaults."""
        log.debug("policy bucket not available yet: %s", error)
        self.ready.set()

    async def _restart_watch(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
        self._watch = await self._source.watch(self._on_entry)
        await self._watch.initial.wait()
        self.ready.set()

    async def _on_entry(self, entry: KvEntry) -> None:
        if self.revisions.get(entry.key, 0) >= entry.revision:
            return  # a resync replays what we have already applied
        candidate = dict(self.documents)
        if entry.deleted:
            candidate.pop(entry.key, None)
        else:
            document = decode(entry, self._defaults)
            if isinstance(document, str):
                self._acknowledge("policy.rejected", entry, document)
                return
            candidate[entry.key] = document
        try:
            live = self._compile(candidate)
            if live is not None:
                await live  # acknowledged below only once the data plane serves it
        except PolicyRejected as exc:
            self._acknowledge("policy.rejected", entry, str(exc))
            return
        self.documents = candidate
        self.revisions[entry.key] = entry.revision
        self._acknowledge("policy.applied", entry, "deleted" if entry.deleted else "")

    def _acknowledge(self, kind: EventKind, entry: KvEntry, reason: str) -> None:
        level = logging.INFO if kind == "policy.applied" else logging.WARNING
        log.log(level, "%s %s revision %d %s", kind, entry.key, entry.revision, reason)
        prefix, _, name = entry.key.partition(".")
        detail = {
            "policy": f"{_KIND.get(prefix, prefix)}/{name}"[:_DETAIL],  # as written: Route/hello
            "key": entry.key[:_DETAIL],
            "revision": str(entry.revision),
            "role": self._role,
            "reason": reason[:_DETAIL],
        }
        if entry.created > 0:  # the server's store time: how long the mesh took to act on it
            detail["after_ms"] = str(max(0, round((self._clock.wall() - entry.created) * 1000)))
        self._events.emit(
            Event(
                id=f"{kind}:{entry.key}:{entry.revision}:{self._node}",
                kind=kind,
                service=name if subjects.is_valid_name(name) else "invalid",
                instance=self._node,
                detail=detail,
            )
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._watch is not None:
            await self._watch.stop()


def decode(entry: KvEntry, defaults: Service) -> Document | str:
    """A stored document merged over this node's `defaults`, or why this node refuses it.

    Documents are stored as written; older revisions hold every field, defaults included.
    """
    where = f"{subjects.POLICY_BUCKET}/{entry.key}@{entry.revision}"
    try:
        raw = msgspec.json.decode(entry.value)
    except msgspec.DecodeError as exc:
        return f"{where}: not JSON: {exc}"
    except RecursionError:  # msgspec raises it for nesting beyond the interpreter's stack
        return f"{where}: nested too deeply"
    document = parse(raw, defaults, file=where, doc_index=None)
    if isinstance(document, Problem):
        return str(document)
    if key_of(document) != entry.key:
        return f"{where}: holds {key_of(document)}"
    return document


async def ensure_bucket(bus: NatsBus) -> None:
    """Create the policy bucket once NATS is reachable, so a first apply is seen at once."""

    async def create() -> None:
        await bucket(bus).open(history=subjects.POLICY_HISTORY)

    await until_done(bus, f"the {subjects.POLICY_BUCKET} bucket", create)


def _passing(error: BusError) -> bool:
    """A timeout or a lost connection: gone by the next try. A refusal (a kind of lost
    connection) is not, nor a missing bucket or JetStream off."""
    return isinstance(error, BusTimeout | BusUnavailable) and not isinstance(error, BusRefused)
