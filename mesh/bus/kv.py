"""JetStream key-value buckets: reads, compare-and-set writes, history, watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from mesh.bus.core import NatsBus, mapped
from mesh.errors import Conflict

log = logging.getLogger(__name__)

_DELETED = ("DEL", "PURGE")


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


class KvStore:
    """One bucket; every method maps NATS errors to mesh errors."""

    def __init__(self, bus: NatsBus, bucket: str) -> None:
        self._bus = bus
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def open(self, *, history: int = 64, create: bool = True) -> None:
        js = self._bus.client.jetstream()
        try:
            try:
                self._kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                if not create:
                    raise
                config = KeyValueConfig(
                    bucket=self.bucket, history=history, storage=StorageType.FILE
                )
                self._kv = await js.create_key_value(config)
        except Exception as exc:
            raise mapped(exc) from exc

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
        try:
            if expected_revision == 0:
                return await self.kv.create(key, value)
            return await self.kv.update(key, value, last=expected_revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(key, expected_revision) from None
        except Exception as exc:
            raise mapped(exc) from exc

    async def delete(self, key: str, *, expected_revision: int) -> None:
        try:
            await self.kv.delete(key, last=expected_revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(key, expected_revision) from None
        except Exception as exc:
            raise mapped(exc) from exc

    async def entries(self) -> list[KvEntry]:
        """The current value of every live key."""
        found: list[KvEntry] = []
        await self._drain(await self._watch(">", history=False), found)
        return [e for e in found if not e.deleted]

    async def history(self, key: str) -> list[KvEntry]:
        """Every stored revision of `key`, oldest first (deletions included)."""
        found: list[KvEntry] = []
        await self._drain(await self._watch(key, history=True), found)
        return found

    async def _watch(self, keys: str, *, history: bool) -> KeyValue.KeyWatcher:
        try:
            return await self.kv.watch(keys, include_history=history)
        except Exception as exc:
            raise mapped(exc) from exc

    async def _drain(self, watcher: KeyValue.KeyWatcher, into: list[KvEntry]) -> None:
        try:
            async for raw in watcher:
                if raw is None:  # the marker after the initial values
                    break
                into.append(_entry(raw))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def watch(self, handler: Callable[[KvEntry], Awaitable[None]]) -> Watch:
        """Deliver every key's current value, then each change, until stopped."""
        watcher = await self._watch(">", history=False)
        return Watch(watcher, handler)


class Watch:
    """A running watch; `initial` is set once the bucket's current values were delivered."""

    def __init__(
        self, watcher: KeyValue.KeyWatcher, handler: Callable[[KvEntry], Awaitable[None]]
    ) -> None:
        self._watcher = watcher
        self._handler = handler
        self.initial = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="kv-watch")

    async def _run(self) -> None:
        async for raw in self._watcher:
            if raw is None:
                self.initial.set()
                continue
            try:
                await self._handler(_entry(raw))
            except Exception:
                log.exception("kv watch handler failed for %s", raw.key)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self._watcher.stop()  # type: ignore[no-untyped-call]
