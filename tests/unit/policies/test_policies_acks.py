"""policies.acks: which live node applied or rejected which revision, timed by an injected clock."""

from __future__ import annotations

import asyncio

from manual_clock import ManualClock
from memory_bus import MemoryHub

from mesh import subjects
from mesh.messages import Event, EventKind, encode
from policies.acks import AckCollector, NodeAck


async def answer(hub: MemoryHub, kind: EventKind, node: str, key: str, revision: int) -> None:
    event = Event(
        id=f"{kind}:{key}:{revision}:{node}",
        kind=kind,
        service=key.partition(".")[2],
        instance=node,
        detail={"key": key, "revision": str(revision), "role": "agent", "reason": "bad"},
    )
    await hub.bus().publish(subjects.event(kind, event.service), encode(event))


async def test_every_node_answering_every_key_ends_the_wait_with_times_from_the_clock() -> None:
    hub, clock = MemoryHub(), ManualClock()
    collector = AckCollector(hub.bus(), {"gw": "gateway", "a1": "agent"}, clock)
    await collector.start()
    collector.expect({"route.r": 7}, written_at=clock.now)
    clock.now += 0.012
    await answer(hub, "policy.applied", "gw", "route.r", 7)
    await answer(hub, "policy.applied", "a1", "route.r", 6)  # an older revision: not yet
    assert not await collector.wait(0.0)
    clock.now += 0.030
    await answer(hub, "policy.applied", "a1", "route.r", 7)
    assert await collector.wait(5.0)
    assert round(collector.last_answer(), 3) == 0.042
    table, clean = collector.report()
    assert clean
    rows = [line.split() for line in table.splitlines()[1:]]
    assert rows == [
        ["a1", "agent", "applied", "42", "ms"],
        ["gw", "gateway", "applied", "12", "ms"],
    ]


async def test_a_rejection_or_a_silent_node_is_not_clean() -> None:
    hub, clock = MemoryHub(), ManualClock()
    collector = AckCollector(hub.bus(), {"gw": "gateway", "a1": "agent"}, clock)
    await collector.start()
    collector.expect({"service.s": 3}, written_at=clock.now)
    await answer(hub, "policy.rejected", "gw", "service.s", 3)
    assert not await collector.wait(0.0)
    table, clean = collector.report()
    assert not clean
    assert [line.split()[2] for line in table.splitlines()[1:]] == ["silent", "rejected"]
    assert table.splitlines()[2].endswith("service.s: bad")


async def test_each_answer_checks_its_own_node_only() -> None:
    # `mesh policy apply --wait` on a big mesh: a scan of every node per answer made a
    # thousand answers cost a million checks, time the last answer then waited on.
    hub, clock = MemoryHub(), ManualClock()
    nodes = {f"a{i}": "agent" for i in range(300)}
    collector = AckCollector(hub.bus(), nodes, clock)
    await collector.start()
    collector.expect({"route.r": 7}, written_at=clock.now)
    checks = 0
    answered = collector.answered

    def counting(ack: NodeAck) -> bool:
        nonlocal checks
        checks += 1
        return answered(ack)

    collector.answered = counting  # type: ignore[method-assign]
    waiting = asyncio.create_task(collector.wait(5.0))
    for node in nodes:
        await answer(hub, "policy.applied", node, "route.r", 7)
        await asyncio.sleep(0)  # the waiter runs between answers, as it would live
    assert await waiting
    assert checks <= 2 * len(nodes)
