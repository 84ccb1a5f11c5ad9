"""The load figures a node reports beside its heartbeats: what it forwarded in the last window."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from mesh.forwarding.directory import Directory
from mesh.messages import (
    MAX_LOAD_COUNT,
    MAX_LOAD_INSTANCES,
    MAX_LOAD_SERVICES,
    MIN_LOAD_WINDOW,
    InstanceTraffic,
    Load,
    ServiceTraffic,
)
from mesh.metrics import BUCKETS, Metrics

# The agent's inbound engine routes everything to its own service under this route: the
# callers already report those requests, which would otherwise count twice.
INBOUND_ROUTE = "inbound"
_LONGEST_WINDOW = 3600.0  # what the wire accepts; a longer one is reported as this long
_NO_LATENCY = (0,) * (len(BUCKETS) + 1)
# Periodic heartbeats come an interval apart, give or take the loop's lateness.
_PERIODIC = 0.9


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts since the process started (or the instance's counters were created)."""

    requests: int = 0
    errors: int = 0
    latency: tuple[int, ...] = _NO_LATENCY

    def since(self, before: Tally) -> Tally:
        """The counts added after `before`; all of them if the counters restarted."""
        if self.requests < before.requests or any(
            now < then for now, then in zip(self.latency, before.latency, strict=True)
        ):
            return self
        return Tally(
            self.requests - before.requests,
            max(self.errors - before.errors, 0),
            tuple(now - then for now, then in zip(self.latency, before.latency, strict=True)),
        )


def service_tallies(metrics: Metrics, own: str) -> dict[str, Tally]:
    """Per destination service, from the request counters (the inbound engine's left out)."""
    requests: dict[str, list[int]] = {}
    for (service, route, status, _flags), count in list(metrics.requests.items()):
        if service and not (route == INBOUND_ROUTE and service == own):
            figures = requests.setdefault(service, [0, 0])
            figures[0] += count
            figures[1] += count if status >= 500 else 0
    latency: dict[str, list[int]] = {}
    for (service, route), counts in list(metrics.durations.items()):
        if service in requests and not (route == INBOUND_ROUTE and service == own):
            summed = latency.setdefault(service, [0] * len(counts))
            for index, count in enumerate(counts):
                summed[index] += count
    return {
        service: Tally(total, errors, tuple(latency.get(service, _NO_LATENCY)))
        for service, (total, errors) in requests.items()
    }


def _bounded(count: int) -> int:
    """A count the wire takes: only a window stretched by a long NATS outage (no heartbeat
    sent, none cut) could hold more, and watchers would refuse the report."""
    return min(count, MAX_LOAD_COUNT)


def _wire(latency: tuple[int, ...]) -> list[int]:
    """Trailing zeros left out."""
    end = len(latency)
    while end and not latency[end - 1]:
        end -= 1
    return [_bounded(count) for count in latency[:end]]


class LoadWindow:
    """A window ends with a periodic heartbeat (an interval after the one before); reports
    sent sooner (beside sync answers, urgent changes) repeat the last window's figures. So the
    latest record always covers a whole interval, however often syncs come, and a
    reader's own sync shows a window that ended before it asked."""

    def __init__(
        self, metrics: Metrics, directory: Directory, *, own: str, interval: float, now: float
    ) -> None:
        self._metrics = metrics
        self._directory = directory
        self._own = own
        # However short the interval (the setting allows any), the wire's shortest window.
        self._shortest = max(interval * _PERIODIC, MIN_LOAD_WINDOW)
        self._cut_at = now
        self._services: dict[str, Tally] = {}
        self._instances: dict[tuple[str, str], Tally] = {}
        self._load = Load()
        self.omitted = 0  # entries left out over the caps, since start (a metric)

    def __call__(self, now: float) -> Load:
        if now - self._cut_at >= self._shortest:
            self._load = self._cut(now)
        return self._load

    def _cut(self, now: float) -> Load:
        window = min(now - self._cut_at, _LONGEST_WINDOW)
        self._cut_at = now
        services = service_tallies(self._metrics, self._own)
        instances: dict[tuple[str, str], Tally] = {}
        active: dict[tuple[str, str], int] = {}
        for service, instance, counters in self._directory.counters.each():
            key = (service, instance)
            instances[key] = Tally(counters.ended, counters.failed, tuple(counters.latency))
            active[key] = counters.active
        service_deltas = {k: v.since(self._services.get(k, Tally())) for k, v in services.items()}
        instance_deltas = {
            k: v.since(self._instances.get(k, Tally())) for k, v in instances.items()
        }
        self._services, self._instances = services, instances
        in_flight = self._directory.in_flight()
        reported = {
            (service, instance): InstanceTraffic(
                requests=_bounded(tally.requests),
                errors=_bounded(tally.errors),
                inflight=_bounded(active.get((service, instance), 0)),
                latency=_wire(tally.latency),
                ejected=self._directory.is_ejected(service, instance, now),
            )
            for (service, instance), tally in instance_deltas.items()
        }
        load, omitted = capped(window, service_deltas, in_flight, reported)
        self.omitted += omitted
        return load


def capped(
    window: float,
    services: dict[str, Tally],
    in_flight: dict[str, int],
    instances: dict[tuple[str, str], InstanceTraffic],
) -> tuple[Load, int]:
    """The figures worth sending (some traffic, or an ejection), the busiest first within
    the caps; and how many services and instances were left out."""
    worth = sorted(
        (
            (key, traffic)
            for key, traffic in instances.items()
            if traffic.requests or traffic.inflight or traffic.ejected
        ),
        key=lambda entry: (-entry[1].requests - entry[1].inflight, not entry[1].ejected, entry[0]),
    )
    named = {service for (service, _), _ in worth}
    figures = {
        service: ServiceTraffic(
            requests=_bounded(tally.requests),
            errors=_bounded(tally.errors),
            inflight=_bounded(in_flight.get(service, 0)),
            latency=_wire(tally.latency),
        )
        for service in services.keys() | in_flight.keys() | named
        for tally in [services.get(service, Tally())]
        if tally.requests or in_flight.get(service, 0) or service in named
    }
    ranked = sorted(figures, key=lambda s: (-figures[s].requests - figures[s].inflight, s))
    kept = set(ranked[:MAX_LOAD_SERVICES])
    omitted = len(ranked) - len(kept)
    by_service: dict[str, dict[str, InstanceTraffic]] = {}
    room = MAX_LOAD_INSTANCES
    for (service, instance), traffic in worth:
        if service in kept and room:
            by_service.setdefault(service, {})[instance] = traffic
            room -= 1
        else:
            omitted += 1
    reported = {
        service: msgspec.structs.replace(
            figures[service], instances=dict(sorted(by_service.get(service, {}).items()))
        )
        for service in sorted(kept)
    }
    return Load(window=window, services=reported, omitted=_bounded(omitted)), omitted
