"""An in-memory policy bucket for in-process tests of the policy feed (mesh.bus.kv's twin)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mesh.bus.kv import KvEntry
from mesh.errors import BusError
from mesh.forwarding.policy_feed import EntryHandler


class MemoryWatch:
    """Delivers the current entries from a task of its own, as a JetStream watch does."""

    def __init__(self, bucket: MemoryBucket, handler: EntryHandler) -> None:
        self._bucket = bucket
        self.handler = handler
        self.initial = asyncio.Event()
        self.stopped = False
        self._task = asyncio.create_task(self._replay(list(bucket.current.values())))

    async def _replay(self, entries: list[KvEntry]) -> None:
        for entry in entries:
            await asyncio.sleep(0)  # each arrives in a message of its own
            await self.handler(entry)
        self.initial.set()

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._task.cancel()
            self._bucket.watches.remove(self)


class MemoryBucket:
    """Keys, revisions and live watches; `refuse` makes the next open() fail with it."""

    def __init__(self) -> None:
        self.current: dict[str, KvEntry] = {}
        self.revision = 0
        self.watches: list[MemoryWatch] = []
        self.opened = 0
        self.refuse: BusError | None = None

    async def open(self) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.opened += 1

    async def watch(self, handler: EntryHandler) -> MemoryWatch:
        watch = MemoryWatch(self, handler)
        self.watches.append(watch)
        return watch

    async def put(
        self, key: str, document: dict[str, Any] | bytes, *, created: float = 0.0
    ) -> KvEntry:
        """Store `document` (JSON of a dict, or bytes as given) under `key`; watches see it.
        `created`: the wall time the server stored it (0: not said)."""
        value = document if isinstance(document, bytes) else json.dumps(document).encode()
        return await self._store(KvEntry(key, value, self.revision + 1, created=created))

    async def delete(self, key: str) -> KvEntry:
        return await self._store(KvEntry(key, b"", self.revision + 1, created=0.0, deleted=True))

    async def _store(self, entry: KvEntry) -> KvEntry:
        self.revision = entry.revision
        if entry.deleted:
            self.current.pop(entry.key, None)
        else:
            self.current[entry.key] = entry
        for watch in list(self.watches):
            await watch.handler(entry)
        return entry
