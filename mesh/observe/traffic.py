"""Golden signals per service and per instance, merged from the load reports of every caller."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mesh.membership.view import Member, State
from mesh.messages import MAX_LOAD_COUNT, MIN_LOAD_WINDOW, Load, LoadReport, Traffic
from mesh.metrics import BUCKETS

# Callers whose figures count: heard lately. A suspect's last window is old news.
_REPORTING = frozenset({State.ALIVE, State.DRAINING})


@dataclass(frozen=True, slots=True)
class Signals:
    """One destination's figures, summed over the callers that reported it."""

    rate: float = 0.0  # requests per second
    success: float | None = None  # share of requests without an error; None: no requests
    p50: float | None = None  # seconds; None: no requests
    p99: float | None = None
    inflight: int = 0
    requests: int = 0  # in the callers' latest windows
    errors: int = 0
    callers: int = 0  # nodes that reported it


@dataclass(frozen=True, slots=True)
class InstanceRow:
    service: str
    instance: str
    state: str  # alive, suspect, down, draining, left, failing (health) or ejected
    address: str
    zone: str
    version: str
    signals: Signals
    ejected_by: int = 0  # callers that eject it right now


@dataclass(frozen=True, slots=True)
class ServiceRow:
    service: str
    signals: Signals
    states: dict[str, int] = field(default_factory=dict)  # its instances by state


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The q-quantile of per-bucket counts over mesh.metrics.BUCKETS, as Prometheus's
    histogram_quantile computes it: linear within the bucket, the last finite bound
    when it falls above it; None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            if index >= len(BUCKETS):
                return BUCKETS[-1]
            start = BUCKETS[index - 1] if index else 0.0
            return start + (BUCKETS[index] - start) * (rank - below) / count
        below += count
    return BUCKETS[-1]


class _Sum:
    """Figures being added up over callers."""

    __slots__ = ("callers", "errors", "inflight", "latency", "rate", "requests")

    def __init__(self) -> None:
        self.rate = 0.0
        self.requests = self.errors = self.inflight = self.callers = 0
        self.latency = [0] * (len(BUCKETS) + 1)

    def add(self, traffic: Traffic, window: float) -> None:
        """`window` is at least MIN_LOAD_WINDOW (see _reporters)."""
        # Decoding refuses counts over the bound; a record made in this process (a test,
        # a node's own) is held to it here too, so that no rate, sum or quantile made of
        # it can overflow a float (int 10**400 to float is an OverflowError).
        requests = min(traffic.requests, MAX_LOAD_COUNT)
        self.callers += 1
        self.requests += requests
        self.errors += min(traffic.errors, MAX_LOAD_COUNT)
        self.inflight += min(traffic.inflight, MAX_LOAD_COUNT)
        self.rate += requests / window
        for index, count in enumerate(traffic.latency[: len(self.latency)]):
            self.latency[index] += min(count, MAX_LOAD_COUNT)

    def signals(self) -> Signals:
        requests = self.requests
        return Signals(
            rate=self.rate,
            success=None if not requests else 1 - min(self.errors, requests) / requests,
            p50=quantile(0.5, self.latency),
            p99=quantile(0.99, self.latency),
            inflight=self.inflight,
            requests=requests,
            errors=self.errors,
            callers=self.callers,
        )


Loads = Mapping[str, LoadReport]  # the latest report of each instance (mesh.observe.loads)


def _reporters(members: Iterable[Member], loads: Loads) -> list[Load]:
    """The figures of callers heard lately, of their current incarnation, with a window
    that decoding would take (0 says none; a report made in this process could hold a
    shorter one, or NaN)."""
    figures = []
    for m in members:
        report = loads.get(m.instance)
        if (
            report is not None
            and m.state in _REPORTING
            and report.incarnation == m.record.incarnation
            and report.load.window >= MIN_LOAD_WINDOW
        ):
            figures.append(report.load)
    return figures


def services(members: Iterable[Member], loads: Loads) -> list[ServiceRow]:
    """Every service with an agent in the view or traffic reported to it, by name."""
    members = list(members)
    sums: dict[str, _Sum] = {}
    for load in _reporters(members, loads):
        for service, traffic in load.services.items():
            sums.setdefault(service, _Sum()).add(traffic, load.window)
    states: dict[str, dict[str, int]] = {}
    for row in _instance_rows(members, loads, None):
        counts = states.setdefault(row.service, {})
        counts[row.state] = counts.get(row.state, 0) + 1
    return [
        ServiceRow(name, sums[name].signals() if name in sums else Signals(), states.get(name, {}))
        for name in sorted(sums.keys() | states.keys())
    ]


def instances(members: Iterable[Member], loads: Loads, service: str) -> list[InstanceRow]:
    """The instances of `service`: every agent in the view, and any instance a caller
    reported that the view does not hold (any more), by name."""
    return _instance_rows(list(members), loads, service)


def _instance_rows(members: list[Member], loads: Loads, service: str | None) -> list[InstanceRow]:
    sums: dict[tuple[str, str], _Sum] = {}
    ejected: dict[tuple[str, str], int] = {}
    for load in _reporters(members, loads):
        for name, traffic in load.services.items():
            if service is not None and name != service:
                continue
            for instance, figures in traffic.instances.items():
                key = (name, instance)
                sums.setdefault(key, _Sum()).add(figures, load.window)
                ejected[key] = ejected.get(key, 0) + figures.ejected
    agents = {
        (m.record.service, m.instance): m
        for m in members
        if m.record.role == "agent" and (service is None or m.record.service == service)
    }
    rows = []
    for key in sorted(agents.keys() | sums.keys()):
        member = agents.get(key)
        signals = sums[key].signals() if key in sums else Signals()
        by = ejected.get(key, 0)
        if member is None:
            rows.append(InstanceRow(*key, "unknown", "", "", "", signals, by))
            continue
        record = member.record
        rows.append(
            InstanceRow(
                *key,
                _state(member, by),
                f"{record.host}:{record.port}",
                record.zone,
                record.version,
                signals,
                by,
            )
        )
    return rows


def _state(member: Member, ejected_by: int) -> str:
    """The membership state, refined for an alive one: failing its check, or ejected."""
    if member.state is not State.ALIVE:
        return member.state.value
    if member.record.health != "passing":
        return "failing"
    return "ejected" if ejected_by else "alive"
