"""mesh.engine.outbox: writes wait for the end of the loop iteration, then leave in order."""

from __future__ import annotations

import asyncio

from mesh.engine.outbox import Outbox


class Recorder:
    """A connection that records when it was flushed."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def flush(self) -> None:
        self.log.append(self.name)


async def test_nothing_leaves_before_the_iteration_ends() -> None:
    log: list[str] = []
    outbox = Outbox(asyncio.get_running_loop())
    outbox.add(Recorder("a", log))
    assert log == []
    await asyncio.sleep(0)
    assert log == ["a"]


async def test_connections_flush_once_each_in_the_order_they_wrote() -> None:
    log: list[str] = []
    outbox = Outbox(asyncio.get_running_loop())
    for name in ("b", "a", "c"):
        outbox.add(Recorder(name, log))
    await asyncio.sleep(0)
    assert log == ["b", "a", "c"]
    await asyncio.sleep(0)
    assert log == ["b", "a", "c"]  # nothing waits any more: no second flush


async def test_a_later_burst_gets_its_own_flush() -> None:
    log: list[str] = []
    outbox = Outbox(asyncio.get_running_loop())
    outbox.add(Recorder("first", log))
    await asyncio.sleep(0)
    outbox.add(Recorder("second", log))
    await asyncio.sleep(0)
    assert log == ["first", "second"]


async def test_a_connection_added_during_a_flush_waits_for_the_next_one() -> None:
    log: list[str] = []
    loop = asyncio.get_running_loop()
    outbox = Outbox(loop)

    class Chained(Recorder):
        def flush(self) -> None:
            super().flush()
            outbox.add(Recorder("late", log))  # e.g. a reply written while flushing

    outbox.add(Chained("early", log))
    await asyncio.sleep(0)
    assert log == ["early"]
    await asyncio.sleep(0)
    assert log == ["early", "late"]
