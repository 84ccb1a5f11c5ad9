"""A node's tap source on an in-memory bus: it follows announcements, caps and batches."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from factories import request_record
from manual_clock import ManualClock
from memory_bus import MemoryHub
from waiting import until

from mesh import subjects
from mesh.messages import TapFilter, TapOpen, TapRecords, decode, encode
from mesh.metrics import Metrics, registry_for
from mesh.observe import tap_source
from mesh.observe.tap_source import TapSource
from mesh.observe.tap_table import OpenTap


def exchange(clock: ManualClock, path: str = "/x") -> Any:
    """What `offer` reads of a finished exchange (mesh.engine.exchange.Exchange)."""
    engine = SimpleNamespace(rng=random.Random(1), loop=SimpleNamespace(time=clock.monotonic))
    return SimpleNamespace(
        routed=SimpleNamespace(service="orders", route="host"),
        method=b"GET",
        target=path.encode() + b"?secret=1",
        status=200,
        engine=engine,
        record=lambda time: request_record(path=path),
    )


async def source(
    hub: MemoryHub, clock: ManualClock, cap: int = 100, metrics: Metrics | None = None
) -> tuple[TapSource, Any]:
    tapping = TapSource(
        hub.bus(), "gw-1", "edge", metrics or Metrics(), per_second=cap, most_open=8, clock=clock
    )
    engine = SimpleNamespace(taps=None)
    tapping.serve(engine)  # type: ignore[arg-type]
    await tapping.start()
    return tapping, engine


def batches(hub: MemoryHub) -> list[TapRecords]:
    found = []
    for delivery in hub.published:
        if delivery.subject.startswith(f"{subjects.PREFIX}.tapped."):
            message = decode(delivery.subject, delivery.data)
            assert isinstance(message, TapRecords)
            assert delivery.subject == subjects.tapped(message.tap, "edge")
            found.append(message)
    return found


async def announce(hub: MemoryHub, message: TapOpen) -> None:
    await hub.bus().publish(subjects.TAP, encode(message))


def announcer(hub: MemoryHub) -> Callable[[TapOpen], Awaitable[None]]:
    """Announces taps from one client: a flood's thousands of buses would slow the hub."""
    bus = hub.bus()
    return lambda message: bus.publish(subjects.TAP, encode(message))


async def test_engines_point_at_the_taps_only_while_one_is_open() -> None:
    hub, clock = MemoryHub(), ManualClock()
    tapping, engine = await source(hub, clock)
    assert engine.taps is None
    await announce(hub, TapOpen(id="t1", ttl=5))
    assert engine.taps is tapping
    await announce(hub, TapOpen(id="t1", ttl=5, closing=True))
    assert engine.taps is None
    await tapping.stop()


async def test_an_expired_tap_is_ignored_and_costs_nothing_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 0.01)
    hub, clock = MemoryHub(), ManualClock()
    tapping, engine = await source(hub, clock)
    await announce(hub, TapOpen(id="killed", ttl=5))  # and never a goodbye
    tapping.offer(exchange(clock, "/before"))
    await until(lambda: batches(hub))
    clock.now += 5
    await until(lambda: engine.taps is None)
    assert tapping.table.taps == {}
    assert [r.path for b in batches(hub) for r in b.records] == ["/before"]
    await tapping.stop()


async def test_the_cap_drops_and_counts_and_the_tap_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 3600)  # flushed by hand below
    hub, clock = MemoryHub(), ManualClock()
    metrics = Metrics()
    tapping = TapSource(hub.bus(), "gw-1", "edge", metrics, per_second=3, most_open=8, clock=clock)
    await tapping.start()
    await announce(hub, TapOpen(id="t1", ttl=5))
    for n in range(5):
        tapping.offer(exchange(clock, f"/{n}"))
    await tapping.flush()
    clock.now += 1  # a new second: the cap takes again once ticked
    tapping.offer(exchange(clock, "/5"))  # not yet: still the first window's
    await announce(hub, TapOpen(id="t1", ttl=5))  # a renewal ticks it, as flushing does
    tapping.offer(exchange(clock, "/6"))
    await tapping.flush()
    first, second = batches(hub)
    assert ([r.path for r in first.records], first.dropped) == (["/0", "/1", "/2"], 2)
    assert ([r.path for r in second.records], second.dropped) == (["/6"], 1)
    assert (tapping.sent, tapping.dropped) == (4, 3)
    scraped = registry_for(metrics)
    assert scraped.get_sample_value("mesh_tap_records_dropped_total") == 3
    assert scraped.get_sample_value("mesh_taps_open") == 1
    await tapping.stop()


async def test_a_path_filter_matches_the_path_of_an_absolute_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service calling through its agent's outbound proxy sends `GET http://svc/path`."""
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 3600)
    hub, clock = MemoryHub(), ManualClock()
    tapping, _ = await source(hub, clock)
    await announce(hub, TapOpen(id="t1", ttl=5, filter=TapFilter(path_prefix="/v1/")))
    for path in ("http://orders/v1/list", "http://orders/v2/list", "/v1/x"):
        tapping.offer(exchange(clock, path))
    await tapping.flush()
    assert [r.path for b in batches(hub) for r in b.records] == ["http://orders/v1/list", "/v1/x"]
    await tapping.stop()


async def test_a_large_backlog_leaves_in_messages_any_node_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 3600)
    hub, clock = MemoryHub(), ManualClock()
    tapping, _ = await source(hub, clock, cap=1000)
    await announce(hub, TapOpen(id="t1", ttl=5))
    long = "/" + "p" * 1000
    for _ in range(200):
        tapping.offer(exchange(clock, long))
    tapping.offer(exchange(clock, "/" + "x" * tap_source.BATCH_BYTES))  # alone too large
    await tapping.flush()
    found = batches(hub)  # each decoded, so within mesh.messages' size limit
    assert len(found) > 1
    assert sum(len(b.records) for b in found) == 200
    assert sum(b.dropped for b in found) == 1
    assert all(len(msgspec.json.encode(b)) < 64 * 1024 for b in found)
    await tapping.stop()


def hostile(n: int, closing: bool = False) -> TapOpen:
    """As anyone allowed to announce taps could: a filter that never matches, a long TTL."""
    return TapOpen(id=f"evil{n}", filter=TapFilter(status="5xx"), ttl=60, closing=closing)


async def test_a_flood_of_taps_keeps_the_cap_counts_the_rest_and_tells_a_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 3600)
    hub, clock, metrics = MemoryHub(), ManualClock(), Metrics()
    tapping, engine = await source(hub, clock, metrics=metrics)
    flood = announcer(hub)
    await flood(TapOpen(id="mine", ttl=10))  # a person's tap, open first
    for n in range(2000):
        await flood(hostile(n))
    assert list(tapping.table.taps) == ["mine", *(f"evil{n}" for n in range(7))]
    assert tapping.refused == 2000 - 7
    scraped = registry_for(metrics)
    assert scraped.get_sample_value("mesh_taps_refused_total") == 2000 - 7
    assert scraped.get_sample_value("mesh_taps_open") == 8
    told = batches(hub)  # within a second's budget, not one answer per announcement
    assert [(b.tap, b.refused, b.records) for b in told] == [
        (f"evil{n}", True, []) for n in range(7, 7 + tap_source.REFUSALS_TOLD)
    ]
    clock.now += 1  # the next second: a refused `mesh tap` renewing hears of it
    await flood(hostile(6000))
    assert batches(hub)[-1].tap == "evil6000"

    # Goodbyes still end taps amid the flood, and a freed slot goes to the next asking.
    await flood(TapOpen(id="mine", ttl=10, closing=True))
    for n in range(2000):
        await flood(hostile(n, closing=True))
    assert tapping.table.taps == {}
    assert engine.taps is None
    await flood(TapOpen(id="mine", ttl=10))
    assert list(tapping.table.taps) == ["mine"]
    await tapping.stop()


async def test_a_request_and_a_round_cost_at_most_the_cap_of_taps_however_many_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tap_source, "FLUSH_EVERY", 3600)
    hub, clock = MemoryHub(), ManualClock()
    tapping, _ = await source(hub, clock, cap=1)
    flood = announcer(hub)
    for n in range(1000):
        await flood(TapOpen(id=f"t{n}", ttl=60))  # each wants every request
    asked = 0
    wants = OpenTap.wants

    def counted(tap: OpenTap, *request: Any) -> bool:
        nonlocal asked
        asked += 1
        return wants(tap, *request)

    monkeypatch.setattr(OpenTap, "wants", counted)
    for _ in range(100):
        tapping.offer(exchange(clock))
    assert asked == 100 * 8
    published = len(hub.published)
    await tapping.flush()  # each kept tap has a record or drops to hear of: one batch each
    assert len(hub.published) - published == 8
    await tapping.stop()
