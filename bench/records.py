"""The simulated fleet of bench.scale: which records exist, who announces them, which die."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Filler records are never called: their port is one nothing answers on (discard, RFC 863).
UNCALLED_PORT = 9


@dataclass(frozen=True, slots=True)
class Record:
    service: str
    instance: str
    port: int


def layout(
    total: int, *, per_service: int, callees: Mapping[str, int], callee_instances: int
) -> list[Record]:
    """`total` records: `callee_instances` of each called service (pointing at its real
    port) first, then filler services of `per_service` records each (the last may be short).
    """
    records = [
        Record(service, f"{service}-{i}", port)
        for service, port in callees.items()
        for i in range(callee_instances)
    ][:total]
    index = 0
    while len(records) < total:
        service = f"sim-{index:04d}"
        count = min(per_service, total - len(records))
        records += [Record(service, f"{service}-{i}", UNCALLED_PORT) for i in range(count)]
        index += 1
    return records


def shares(total: int, processes: int) -> list[range]:
    """Split record indexes 0..total-1 into `processes` contiguous ranges, sizes within one."""
    size, extra = divmod(total, processes)
    ranges, start = [], 0
    for p in range(processes):
        end = start + size + (p < extra)
        ranges.append(range(start, end))
        start = end
    return ranges


def victims(records: Sequence[Record], count: int) -> list[Record]:
    """`count` records taken one per service in turn (each service's last ones first), so
    that the loss touches as many services as it can: the called ones included."""
    by_service: dict[str, list[Record]] = {}
    for record in records:
        by_service.setdefault(record.service, []).append(record)
    chosen: list[Record] = []
    depth = 0
    while len(chosen) < min(count, len(records)):
        for members in by_service.values():
            if depth < len(members) and len(chosen) < count:
                chosen.append(members[-1 - depth])
        depth += 1
    return chosen
