"""Hot-path counters in plain dicts, turned into Prometheus metrics only when scraped."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request duration buckets (seconds), Istio's: from half a millisecond, since a request
# through a local proxy often takes less than one, to ten seconds.
BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GaugeSource = Callable[[], Iterable[tuple[tuple[str, ...], float]]]


class Metrics:
    """Counters bumped on the hot path with a dict lookup; nothing allocated per request."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int, str], int] = {}
        # (service, route) -> [count per bucket..., count above the last bucket]
        self.durations: dict[tuple[str, str], list[int]] = {}
        self.duration_sums: dict[tuple[str, str], float] = {}
        self.upstream_resends: dict[tuple[str, ...], int] = {}
        self.bus_invalid: dict[str, int] = {}
        self.view_dropped: dict[str, int] = {}
        self.events_dropped = 0
        self._gauges: list[tuple[str, str, tuple[str, ...], GaugeSource]] = []
        self._counters: list[tuple[str, str, tuple[str, ...], GaugeSource]] = []

    def request_done(
        self, service: str, route: str, status: int, flags: str, seconds: float, count: int = 1
    ) -> None:
        """`count`: how many requests this one stands for (a data plane's sampled log)."""
        key = (service, route, status, flags)
        requests = self.requests
        requests[key] = requests.get(key, 0) + count
        hkey = (service, route)
        buckets = self.durations.get(hkey)
        if buckets is None:
            buckets = self.durations[hkey] = [0] * (len(BUCKETS) + 1)
            self.duration_sums[hkey] = 0.0
        buckets[bisect_left(BUCKETS, seconds)] += count
        self.duration_sums[hkey] += seconds * count

    def resend(self, service: str, reason: str) -> None:
        key = (service, reason)
        self.upstream_resends[key] = self.upstream_resends.get(key, 0) + 1

    def invalid_message(self, family: str) -> None:
        self.bus_invalid[family] = self.bus_invalid.get(family, 0) + 1

    def dropped(self, reason: str) -> None:
        self.view_dropped[reason] = self.view_dropped.get(reason, 0) + 1

    def gauge(
        self, name: str, documentation: str, labels: tuple[str, ...], source: GaugeSource
    ) -> None:
        """Register a gauge read from `source` at scrape time."""
        self._gauges.append((name, documentation, labels, source))

    def counter(
        self, name: str, documentation: str, labels: tuple[str, ...], source: GaugeSource
    ) -> None:
        """Register a counter kept elsewhere, read from `source` at scrape time."""
        self._counters.append((name, documentation, labels, source))

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mesh_requests",
            "Requests answered, by status code and response flags (`-`: none).",
            labels=["service", "route", "code", "flags"],
        )
        for (service, route, status, flags), count in list(self.requests.items()):
            requests.add_metric([service, route, str(status), flags], count)
        yield requests
        durations = HistogramMetricFamily(
            "mesh_request_duration_seconds",
            "Time from request head to the end of the response.",
            labels=["service", "route"],
        )
        for key, counts in list(self.durations.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            durations.add_metric(list(key), buckets, self.duration_sums[key])
        yield durations
        yield _counter(
            "mesh_upstream_resends",
            "Requests sent again: `retry` after a failed attempt, `stale-connection` when a"
            " reused keep-alive connection turned out closed (no evidence against anyone).",
            ["service", "reason"],
            self.upstream_resends,
        )
        yield _counter(
            "mesh_bus_invalid_messages",
            "Wire messages dropped as invalid.",
            ["subject"],
            {(k,): v for k, v in self.bus_invalid.items()},
        )
        yield _counter(
            "mesh_view_dropped_messages",
            "Valid messages the view ignored.",
            ["reason"],
            {(k,): v for k, v in self.view_dropped.items()},
        )
        yield _counter(
            "mesh_events_dropped",
            "Events not published (queue full).",
            [],
            {(): self.events_dropped},
        )
        for name, documentation, labels, source in self._counters:
            counter = CounterMetricFamily(name, documentation, labels=list(labels))
            for values, value in source():
                counter.add_metric(list(values), value)
            yield counter
        for name, documentation, labels, source in self._gauges:
            gauge = GaugeMetricFamily(name, documentation, labels=list(labels))
            for values, value in source():
                gauge.add_metric(list(values), value)
            yield gauge


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _counter(
    name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in list(values.items()):
        family.add_metric(list(key), value)
    return family


class _Adapter(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.collect()


def registry_for(metrics: Metrics) -> CollectorRegistry:
    """A registry with our collector and the process's CPU and memory figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Adapter(metrics))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
