"""mesh.bus.kv against a real JetStream bucket: complete reads even while others write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from mesh.bus import NatsBus
from mesh.bus.core import WATCHERS
from mesh.bus.kv import KvEntry, KvStore
from mesh.config import load as load_settings
from mesh.playground.natsserver import NatsServer

KEYS = [f"service.s{i:02d}" for i in range(40)]


@pytest.fixture
async def store(fresh_nats: NatsServer) -> AsyncIterator[KvStore]:
    bus = NatsBus(load_settings(nats_url=fresh_nats.url), name="test-kv")
    await bus.start(wait=5)
    kv = KvStore(bus, "test_bucket")
    await kv.open(history=8)
    yield kv
    await bus.close()


async def fill(store: KvStore) -> None:
    for key in KEYS:
        await store.put(key, b"v1", expected_revision=0)


async def test_an_empty_bucket_reads_as_empty_at_once(store: KvStore) -> None:
    assert await asyncio.wait_for(store.entries(), 2) == []
    assert await asyncio.wait_for(store.history("service.none"), 2) == []
    watch = await store.watch(_ignore)
    assert watch.initial.is_set()
    await watch.stop()


async def test_entries_are_complete_while_another_key_keeps_changing(store: KvStore) -> None:
    await fill(store)
    await store.put("service.busy", b"0", expected_revision=0)
    writer = asyncio.create_task(_keep_writing(store, "service.busy"))
    try:
        for _ in range(20):
            keys = {e.key for e in await store.entries()}
            assert keys == {*KEYS, "service.busy"}
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


async def test_a_watch_is_initial_only_once_every_current_value_was_handled(
    store: KvStore,
) -> None:
    await fill(store)
    seen: list[str] = []

    async def handler(entry: KvEntry) -> None:
        seen.append(entry.key)

    watch = await store.watch(handler)
    await asyncio.wait_for(watch.initial.wait(), 5)
    assert sorted(seen) == KEYS
    await store.put("service.later", b"x", expected_revision=0)
    for _ in range(100):
        if "service.later" in seen:
            break
        await asyncio.sleep(0.02)
    assert seen[-1] == "service.later"
    await watch.stop()


async def test_history_lists_every_revision_oldest_first(store: KvStore) -> None:
    revision = await store.put("service.h", b"1", expected_revision=0)
    for value in (b"2", b"3"):
        revision = await store.put("service.h", value, expected_revision=revision)
    await store.put("service.other", b"x", expected_revision=0)  # newer, another key
    assert [e.value for e in await store.history("service.h")] == [b"1", b"2", b"3"]


async def _keep_writing(store: KvStore, key: str) -> None:
    revision = (await store.get(key) or _missing()).revision
    for n in range(100_000):  # bounded; cancelled long before
        revision = await store.put(key, str(n).encode(), expected_revision=revision)


async def _ignore(entry: KvEntry) -> None:
    """A watch handler for tests that only look at `initial`."""


def _missing() -> KvEntry:
    raise AssertionError("the key was written before")


async def test_a_bucket_admits_a_consumer_per_node_of_a_large_fleet(store: KvStore) -> None:
    # nats-server refuses a stream's 1,001st consumer by default, and every node watches the
    # policy bucket with one: the bench's 1,000-node fleet hit it on its first apply.
    js = store.kv._js
    info = await js.stream_info("KV_test_bucket")
    assert info.config.max_consumers == WATCHERS
    info.config.max_consumers = 1000  # as a bucket made before this, or by hand
    await js.update_stream(info.config)
    await store.open(history=8)
    assert (await js.stream_info("KV_test_bucket")).config.max_consumers == WATCHERS
