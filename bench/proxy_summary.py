"""The proxy benchmark's arithmetic: runs to per-cell medians, ratios and tables (pure)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.tables import median, millis, number, ratio, table

SUBJECT = "natsmesh"
HAPROXY_PLANE = "natsmesh-haproxy"  # the gateway with MESH_GATEWAY_DATA_PLANE=haproxy
SUBJECTS = (SUBJECT, HAPROXY_PLANE)  # each compared with the others
BASELINE = "baseline"  # natsmesh's gateway at another git revision (--baseline)
TAPPED = "natsmesh+tap"  # the same gateway measured with one `mesh tap` open (--tap)
# Ratios reported: natsmesh against each of these, when both ran.
REQS_AGAINST = ("nginx", "haproxy", "passthrough", SUBJECT, BASELINE, TAPPED)
P99_AGAINST = ("nginx", "haproxy", SUBJECT, BASELINE, TAPPED)
# A core this busy during a run was the limit (a little short of 100%: ticks are coarse).
SATURATED = 0.9
# Processes outside the benchmark using more CPU than this (vCPU) make a run suspect.
BUSY_ELSEWHERE = 0.1


@dataclass(frozen=True, slots=True)
class Run:
    """One measured wrk run against one target."""

    round: int
    proxy: str
    size: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx responses plus socket errors
    bytes_per_response: float
    cpu_seconds: float  # of the target's process tree during the run
    wall_seconds: float
    proxy_core_busy: float  # 0..1
    load_core_busy: float  # 0..1
    others_vcpu: float = 0.0  # CPU used by processes the benchmark did not start

    @property
    def vcpu(self) -> float:
        """Cores' worth of CPU the target used during the run."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else math.nan

    @property
    def vcpu_per_krps(self) -> float:
        """vCPU the target used per 1,000 req/s = CPU seconds per 1,000 requests."""
        return ratio(self.vcpu, self.rps / 1000.0) if self.rps > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "vcpu": self.vcpu, "vcpu_per_krps": self.vcpu_per_krps}


@dataclass(frozen=True, slots=True)
class Cell:
    """One target in one (size, connections) cell: medians over the rounds."""

    proxy: str
    size: str
    connections: int
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    vcpu: float
    vcpu_per_krps: float
    proxy_core_busy: float
    load_core_busy: float
    bytes_per_response: float
    errors: int  # summed over the rounds: any error makes the cell suspect
    others_vcpu: float  # the worst round's: one disturbed round is worth knowing about

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bound": self.bound}

    @property
    def bound(self) -> str:
        """Which core was saturated: P (the proxy's), L (the load core's), both, or none.

        Only a P-bound cell measures the proxy's capacity; an L-bound one measures wrk
        and the upstream, and understates a fast proxy.
        """
        saturated = [
            name
            for name, busy in (("P", self.proxy_core_busy), ("L", self.load_core_busy))
            if busy >= SATURATED
        ]
        return "+".join(saturated) or "-"


def summarise(runs: Sequence[Run]) -> list[Cell]:
    groups: dict[tuple[str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.size, run.connections, run.proxy)].append(run)
    return [
        Cell(
            proxy=proxy,
            size=size,
            connections=connections,
            rounds=len(group),
            rps=median(r.rps for r in group),
            p50_ms=median(r.p50_ms for r in group),
            p99_ms=median(r.p99_ms for r in group),
            vcpu=median(r.vcpu for r in group),
            vcpu_per_krps=median(r.vcpu_per_krps for r in group),
            proxy_core_busy=median(r.proxy_core_busy for r in group),
            load_core_busy=median(r.load_core_busy for r in group),
            bytes_per_response=median(r.bytes_per_response for r in group),
            errors=sum(r.errors for r in group),
            others_vcpu=max(r.others_vcpu for r in group),
        )
        for (size, connections, proxy), group in groups.items()
    ]


@dataclass(frozen=True, slots=True)
class Ratios:
    """A natsmesh gateway (`subject`) against the others in one cell: above 1 means the
    gateway has more of it."""

    subject: str
    size: str
    connections: int
    rps: dict[str, float]  # other proxy -> natsmesh req/s / its req/s
    p99: dict[str, float]  # other proxy -> natsmesh p99 / its p99


def ratios(cells: Sequence[Cell]) -> list[Ratios]:
    by_key = {(c.size, c.connections, c.proxy): c for c in cells}
    out = []
    for cell in cells:
        if cell.proxy not in SUBJECTS:
            continue
        key = (cell.size, cell.connections)
        others = {
            name: by_key[(*key, name)]
            for name in REQS_AGAINST
            if (*key, name) in by_key and name != cell.proxy
        }
        out.append(
            Ratios(
                subject=cell.proxy,
                size=cell.size,
                connections=cell.connections,
                rps={name: ratio(cell.rps, other.rps) for name, other in others.items()},
                p99={
                    name: ratio(cell.p99_ms, other.p99_ms)
                    for name, other in others.items()
                    if name in P99_AGAINST
                },
            )
        )
    return out


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def _times(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def cells_table(cells: Sequence[Cell], order: Sequence[str]) -> str:
    """One row per target per cell, cells in the order they ran, targets in `order`."""
    rank = {name: i for i, name in enumerate(order)}
    first_seen: dict[tuple[str, int], int] = {}
    for c in cells:
        first_seen.setdefault((c.size, c.connections), len(first_seen))

    def position(c: Cell) -> tuple[int, int]:
        return first_seen[(c.size, c.connections)], rank.get(c.proxy, len(rank))

    rows = [
        [
            c.size,
            str(c.connections),
            c.proxy,
            number(c.rps),
            millis(c.p50_ms),
            millis(c.p99_ms),
            number(c.vcpu, 2),
            number(c.vcpu_per_krps, 3),
            _percent(c.proxy_core_busy),
            _percent(c.load_core_busy),
            c.bound,
            number(c.others_vcpu, 2),
            number(c.bytes_per_response),
            str(c.errors),
        ]
        for c in sorted(cells, key=position)
    ]
    header = [
        "size",
        "conns",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vCPU",
        "vCPU/1k rps",
        "core P",
        "core L",
        "bound",
        "other",
        "B/resp",
        "errors",
    ]
    return table(header, rows, left=3)


def ratios_table(rows: Sequence[Ratios]) -> str:
    """Columns for the targets that ran."""
    reqs = [name for name in REQS_AGAINST if any(name in r.rps for r in rows)]
    p99 = [name for name in P99_AGAINST if any(name in r.p99 for r in rows)]
    header = ["target", "size", "conns"]
    header += [f"req/s vs {name}" for name in reqs]
    header += [f"p99 vs {name}" for name in p99]
    body = [
        [
            r.subject,
            r.size,
            str(r.connections),
            *(_times(r.rps.get(name, math.nan)) for name in reqs),
            *(_times(r.p99.get(name, math.nan)) for name in p99),
        ]
        for r in rows
    ]
    return table(header, body, left=3)
