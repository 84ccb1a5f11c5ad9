"""JetStream key-value buckets: reads, compare-and-set writes, history, watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from mesh.bus.core import CONSUMER_HEARTBEAT, NatsBus, mapped, replicas_refused
from mesh.errors import BusTimeout, Conflict

log = logging.getLogger(__name__)

_DELETED = ("DEL", "PURGE")
# nats-py's "initial values delivered" marker can come before values already on their
# way (nats-io/nats.py#842): a read trusts the newest revision the stream reports instead,
# and after the marker waits this long for values still in flight before it gives up.
_GRACE = 1.0
_READ_TIMEOUT = 10.0
_INACTIVE = 300.0  # seconds a watch's consumer outlives its client, as nats-py's watch
# Making a watch's consumer (and remaking it after its node died) is one JetStream request.
# In the seconds after a node dies the cluster may still place a consumer there and never
# answer: 2 s, not nats-py's 5, before the watch tries again (a LAN answers in ms).
_CONSUMER_CREATE = 2.0
_PLACEMENTS = 3  # attempts at a one-off read's consumer (nats-py's 5 s each), as above
# Server-placed markers (nats-server 2.11+) say why a key went, instead of KV-Operation.
_MARKER_DELETES = ("MaxAge", "Purge", "Remove")


@dataclass(frozen=True, slots=True)
class KvEntry:
    key: str
    value: bytes
    revision: int
    created: float  # epoch seconds the server stored it
    deleted: bool = False


def _entry(raw: KeyValue.Entry) -> KvEntry:
    return KvEntry(
        key=raw.key,
        value=raw.value or b"",
        revision=raw.revision or 0,
        created=raw.created.timestamp() if isinstance(raw.created, datetime) else 0.0,
        deleted=raw.operation in _DELETED,
    )


def _delivered(prefix: str, msg: Msg) -> KvEntry:
    """A watch's message as an entry (what nats-py's own watcher builds, without its queue)."""
    headers = msg.headers or {}
    meta = msg.metadata
    deleted = (
        headers.get("KV-Operation") in _DELETED
        or headers.get("Nats-Marker-Reason") in _MARKER_DELETES
    )
    return KvEntry(
        key=msg.subject[len(prefix) :],
        value=msg.data,
        revision=meta.sequence.stream,
        created=meta.timestamp.timestamp(),
        deleted=deleted,
    )


class KvStore:
    """One bucket; every method maps NATS errors to mesh errors."""

    def __init__(self, bus: NatsBus, bucket: str) -> None:
        self._bus = bus
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def open(self, *, history: int | None = None) -> None:
        """Open the bucket; with `history`, create it if missing, keeping that many revisions,
        at the bus's replicas (raised to them if it has fewer)."""
        js = self._bus.client.jetstream()
        stream = f"KV_{self.bucket}"
        try:
            try:
                self._kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                if history is None:
                    raise
                config = KeyValueConfig(
                    bucket=self.bucket,
                    history=history,
                    storage=StorageType.FILE,
                    replicas=self._bus.replicas,
                )
                self._kv = await self._bus.unless_refused(
                    f"$JS.API.STREAM.CREATE.{stream}", js.create_key_value(config)
                )
                await self._bus.ensure_capacity(stream)  # one consumer per node
                return
        except Exception as exc:
            raise replicas_refused(exc, stream, self._bus.replicas) or mapped(exc) from exc
        if history is not None:
            await self._bus.ensure_capacity(stream)

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "open() first"
        return self._kv

    async def get(self, key: str) -> KvEntry | None:
        try:
            return _entry(await self.kv.get(key))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except Exception as exc:
            raise mapped(exc) from exc

    async def put(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Write if the key is still at `expected_revision` (0: must not exist); raise Conflict."""
        write = (
            self.kv.create(key, value)
            if expected_revision == 0
            else self.kv.update(key, value, last=expected_revision)
        )
        try:
            return await self._bus.unless_refused(self._subject(key), write)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(key, expected_revision) from None
        except Exception as exc:
            raise mapped(exc) from exc

    async def delete(self, key: str, *, expected_revision: int) -> None:
        try:
            await self._bus.unless_refused(
                self._subject(key), self.kv.delete(key, last=expected_revision)
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(key, expected_revision) from None
        except Exception as exc:
            raise mapped(exc) from exc

    def _subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"

    async def entries(self) -> list[KvEntry]:
        """The current value of every live key."""
        until = await self._last_revision()
        found: list[KvEntry] = []
        await self._drain(await self._watch(">", history=False), found, until)
        return [e for e in found if not e.deleted]

    async def history(self, key: str) -> list[KvEntry]:
        """Every stored revision of `key`, oldest first (deletions included)."""
        until = await self._last_revision(key)
        found: list[KvEntry] = []
        await self._drain(await self._watch(key, history=True), found, until)
        return found

    async def _last_revision(self, key: str | None = None) -> int:
        """The newest revision in the bucket (of `key` alone, if given); 0 if there is none.

        A replay of current values ends with it: the newest message of the stream is the
        newest of its key, so a last-per-key replay delivers it, and delivers it last.
        """
        js = self._bus.client.jetstream()
        stream = f"KV_{self.bucket}"
        try:
            if key is None:
                info = await js.stream_info(stream)
                return info.state.last_seq or 0
            return (await js.get_last_msg(stream, f"$KV.{self.bucket}.{key}")).seq or 0
        except nats.js.errors.NotFoundError:
            return 0
        except Exception as exc:
            raise mapped(exc) from exc

    async def _watch(self, keys: str, *, history: bool) -> KeyValue.KeyWatcher:
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self.kv.watch(keys, include_history=history)
            except nats.errors.TimeoutError as exc:
                if attempts == _PLACEMENTS:
                    raise mapped(exc) from exc
                # Placed on a node that just died (see _CONSUMER_CREATE): placed anew.
                log.debug("bucket %s: no consumer made (attempt %d); again", self.bucket, attempts)
            except Exception as exc:
                raise mapped(exc) from exc

    async def _drain(self, watcher: KeyValue.KeyWatcher, into: list[KvEntry], until: int) -> None:
        """Collect the replay up to revision `until` (see _last_revision)."""
        marker = False  # nats-py said the replay is over; it may be early
        try:
            while until:
                try:
                    wait = _GRACE if marker else _READ_TIMEOUT
                    raw = await watcher.updates(wait)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    if marker:
                        break  # revisions removed meanwhile (a purge): this is all there is
                    raise BusTimeout(
                        f"bucket {self.bucket}: no values within {_READ_TIMEOUT:g} s"
                    ) from None
                if raw is None:
                    marker = True
                    continue
                into.append(_entry(raw))
                if (raw.revision or 0) >= until:
                    break
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def watch(self, handler: Callable[[KvEntry], Awaitable[None]]) -> Watch:
        """Deliver every key's current value, then each change, until stopped."""
        until = await self._last_revision()
        prefix = f"$KV.{self.bucket}."
        watch = Watch(handler, until, prefix)
        try:
            # nats-py's KeyValue.watch cannot set the heartbeat: the same ordered consumer.
            js = self._bus.client.jetstream(timeout=_CONSUMER_CREATE)
            watch.subscription = await js.subscribe(
                f"{prefix}>",
                stream=f"KV_{self.bucket}",
                cb=watch.deliver,
                ordered_consumer=True,
                idle_heartbeat=CONSUMER_HEARTBEAT,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                inactive_threshold=_INACTIVE,
            )
        except Exception as exc:
            raise mapped(exc) from exc
        return watch


class Watch:
    """A running watch; `initial` is set once the bucket's current values were delivered."""

    def __init__(
        self, handler: Callable[[KvEntry], Awaitable[None]], until: int, prefix: str
    ) -> None:
        self._handler = handler
        self._until = until  # the replay of current values ends with this revision
        self._prefix = prefix
        self.subscription: JetStreamContext.PushSubscription | None = None
        self.initial = asyncio.Event()
        if not until:
            self.initial.set()
        else:  # revisions purged meanwhile never come: the replay is over all the same
            asyncio.get_running_loop().call_later(_READ_TIMEOUT, self.initial.set)

    async def deliver(self, msg: Msg) -> None:
        """nats-py calls this for each message in order, one at a time."""
        entry = _delivered(self._prefix, msg)
        try:
            await self._handler(entry)
        except Exception:
            log.exception("kv watch handler failed for %s", entry.key)
        if entry.revision >= self._until or msg.metadata.num_pending == 0:
            self.initial.set()

    async def stop(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()
