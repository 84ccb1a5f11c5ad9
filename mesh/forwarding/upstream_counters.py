"""Per-instance upstream counters: attempts by outcome, retries, ejections, pruned with the view."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Set

from mesh.metrics import BUCKETS, Metrics
from mesh.resilience.outcome import Kind, Outcome

Sample = tuple[tuple[str, ...], float]

# An attempt's outcome as a label: the failure's kind, or the response's status class.
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx")
_KINDS: dict[Kind, str] = {kind: kind.value for kind in Kind}
_RESPONSE = Kind.RESPONSE


class InstanceCounters:
    """One instance's counts, a plain object: a bump costs two dict lookups, no labels() call."""

    __slots__ = ("active", "attempts", "ejections", "ended", "failed", "latency", "retries")

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.retries = 0
        self.ejections: dict[str, int] = {}
        # For the load figures in heartbeats (mesh.forwarding.load_window), which take
        # differences of these at heartbeat time: nothing per request but these bumps.
        self.active = 0  # attempts in flight
        self.ended = 0  # attempts ended, however
        self.failed = 0  # of them: 5xx, no answer, cut by a deadline or a retry
        self.latency = [0] * (len(BUCKETS) + 1)  # ended attempts' durations, per bucket

    def attempt(self, outcome: Outcome, count: int = 1) -> None:
        kind = outcome.kind
        label = _CLASSES[outcome.status // 100] if kind is _RESPONSE else _KINDS[kind]
        attempts = self.attempts
        attempts[label] = attempts.get(label, 0) + count

    def seen_ended(self, outcome: Outcome, seconds: float, *, failed: bool, count: int) -> None:
        """Attempts learnt of only once they ended, `count` of them like this one (a data
        plane's log, which may sample)."""
        self.attempt(outcome, count)
        self.ended += count
        self.failed += count if failed else 0
        self.latency[bisect_left(BUCKETS, seconds)] += count

    def ended_after(self, seconds: float, *, failed: bool) -> None:
        """An attempt ended (`active` went up when it started)."""
        self.active -= 1
        self.ended += 1
        self.failed += failed
        self.latency[bisect_left(BUCKETS, seconds)] += 1


class UpstreamCounters:
    """Label values come only from the view: an instance's series go when it is forgotten."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, InstanceCounters]] = {}

    def of(self, service: str, instance: str) -> InstanceCounters:
        instances = self._services.get(service)
        if instances is None:
            instances = self._services[service] = {}
        counters = instances.get(instance)
        if counters is None:
            counters = instances[instance] = InstanceCounters()
        return counters

    def retain(self, present: Set[str]) -> None:
        """Drop the counters of every instance not in `present` (the view's members)."""
        for service, instances in list(self._services.items()):
            for instance in [i for i in instances if i not in present]:
                del instances[instance]
            if not instances:
                del self._services[service]

    def expose(self, metrics: Metrics) -> None:
        """Register the three families, read from these counters at scrape time.

        The label is `mesh_instance`, not `instance`: Prometheus gives every scraped
        series the target's `instance` and would rename ours to `exported_instance`.
        """
        metrics.counter(
            "mesh_upstream_instance_attempts",
            "Attempts on each instance by outcome: a failure's kind or the status class.",
            ("service", "mesh_instance", "outcome"),
            self.attempts,
        )
        metrics.counter(
            "mesh_upstream_retries",
            "Retries away from each instance after it failed an attempt.",
            ("service", "mesh_instance"),
            self.retries,
        )
        metrics.counter(
            "mesh_upstream_ejections",
            "Ejections of each instance here, by cause.",
            ("service", "mesh_instance", "cause"),
            self.ejections,
        )

    def attempts(self) -> Iterable[Sample]:
        for service, instance, counters in self.each():
            for outcome, count in list(counters.attempts.items()):
                yield (service, instance, outcome), float(count)

    def retries(self) -> Iterable[Sample]:
        for service, instance, counters in self.each():
            if counters.retries:
                yield (service, instance), float(counters.retries)

    def ejections(self) -> Iterable[Sample]:
        for service, instance, counters in self.each():
            for cause, count in list(counters.ejections.items()):
                yield (service, instance, cause), float(count)

    def each(self) -> list[tuple[str, str, InstanceCounters]]:
        return [
            (service, instance, counters)
            for service, instances in list(self._services.items())
            for instance, counters in list(instances.items())
        ]
