"""A multi-worker gateway's metrics as one gateway's: counts summed, and never going back."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# Families whose samples only grow while a process lives: summed over the workers.
_COUNTS = frozenset({"counter", "histogram"})
# Set when a process starts: a new value means the worker was restarted.
_STARTED = "process_start_time_seconds"

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, str, Labels]  # (family, sample name, labels)


class FleetMetrics:
    """Counters and histograms are the sum of every worker's, so that each request shows
    once; gauges are each worker's own (label `worker`): each has its own view and pools.

    A restarted worker counts from zero again. What it had counted is carried, so that
    the totals never decrease (Prometheus would read a drop as a reset and count the whole
    total again); a worker that does not answer a scrape is held at its last counts.
    Counts a worker made after the last scrape before it died are lost.
    """

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str]] = {}  # name -> (help, type)
        self._last: dict[str, dict[Key, float]] = {}  # worker -> its counts last seen
        self._started: dict[str, float] = {}  # worker -> its process_start_time_seconds
        self._carried: dict[Key, float] = {}  # counts of workers' earlier lives

    def merge(self, pages: Iterable[tuple[str, str | None]]) -> bytes:
        """One exposition from (worker, its /metrics text, None if it gave none) pairs.

        Call it with pages in the order they were read: older pages after newer ones
        would look like a restart.
        """
        gauges: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        for worker, text in pages:
            if text is not None:
                self._read(worker, text, gauges)
        totals: dict[Key, float] = {}
        for counts in self._last.values():
            for key, value in counts.items():
                totals[key] = totals.get(key, 0.0) + value
        self._carried = {key: n for key, n in self._carried.items() if key in totals}
        for key, value in self._carried.items():
            totals[key] += value
        families: dict[str, Metric] = {}
        for (name, sample, labels), value in totals.items():
            self._family(families, name).add_sample(sample, dict(labels), value)
        for name, samples in gauges.items():
            family = self._family(families, name)
            for sample, worker_labels, value in samples:
                family.add_sample(sample, worker_labels, value)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families.values()))
        return generate_latest(registry)

    def _read(
        self, worker: str, text: str, gauges: dict[str, list[tuple[str, dict[str, str], float]]]
    ) -> None:
        counts: dict[Key, float] = {}
        started = None
        for family in text_string_to_metric_families(text):
            self._families.setdefault(family.name, (family.documentation, family.type))
            for sample in family.samples:
                if family.type in _COUNTS:
                    key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                    counts[key] = sample.value
                    continue
                if sample.name == _STARTED:
                    started = sample.value
                labels = {**sample.labels, "worker": worker}
                gauges.setdefault(family.name, []).append((sample.name, labels, sample.value))
        last = self._last.get(worker, {})
        restarted = started is not None and self._started.get(worker, started) != started
        for key, before in last.items():
            # A series the worker no longer has (an instance it forgot) or that went
            # down (a restart the start time did not show) ends: keep what it counted.
            if restarted or counts.get(key, 0.0) < before:
                self._carried[key] = self._carried.get(key, 0.0) + before
        self._last[worker] = counts
        if started is not None:
            self._started[worker] = started

    def _family(self, families: dict[str, Metric], name: str) -> Metric:
        family = families.get(name)
        if family is None:
            documentation, kind = self._families[name]
            family = families[name] = Metric(name, documentation, kind)
        return family


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families
