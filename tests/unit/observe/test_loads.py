"""mesh.observe.loads: watchers keep the latest report of each node, and count bad ones."""

from __future__ import annotations

import asyncio

from memory_bus import MemoryHub

from mesh import subjects
from mesh.messages import Load, LoadReport, encode
from mesh.observe.loads import Loads


async def test_reports_are_kept_by_instance_and_invalid_ones_counted() -> None:
    counted: list[str] = []
    loads = Loads(counted.append)
    hub = MemoryHub()
    await loads.listen(hub.bus())
    await loads.listen(hub.bus())  # once, however often asked
    sender = hub.bus()
    report = LoadReport(service="orders", instance="i1", incarnation=1, load=Load())
    await sender.publish(subjects.load("orders", "i1"), encode(report))
    await sender.publish(subjects.load("orders", "i2"), encode(report))  # names another
    await sender.publish(subjects.load("orders", "i1"), b"{not json")
    await asyncio.sleep(0)
    assert dict(loads.latest) == {"i1": report}
    assert counted == ["load", "load"]
