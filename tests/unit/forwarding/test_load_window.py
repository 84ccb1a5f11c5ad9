"""mesh.forwarding.load_window: windows of forwarded traffic, their differences and caps."""

from __future__ import annotations

import pytest
from factories import load_report

from mesh import subjects
from mesh.forwarding.directory import Directory
from mesh.forwarding.load_window import LoadWindow, Tally, capped, service_tallies
from mesh.messages import (
    MAX_LOAD_COUNT,
    MAX_LOAD_INSTANCES,
    MAX_LOAD_SERVICES,
    MIN_LOAD_WINDOW,
    InstanceTraffic,
    Load,
    decode,
    encode,
)
from mesh.metrics import BUCKETS, Metrics

ZEROS = (0,) * (len(BUCKETS) + 1)


def latency(**at: int) -> tuple[int, ...]:
    """Bucket counts: `b0=3` puts 3 in the first bucket."""
    counts = list(ZEROS)
    for name, count in at.items():
        counts[int(name[1:])] = count
    return tuple(counts)


def attempts(
    directory: Directory,
    service: str,
    instance: str,
    seconds: float,
    n: int,
    *,
    failed: bool = False,
) -> None:
    counters = directory.counters.of(service, instance)
    for _ in range(n):
        counters.active += 1
        counters.ended_after(seconds, failed=failed)


def test_a_tally_since_an_earlier_one_is_the_difference() -> None:
    before = Tally(10, 2, latency(b0=4, b3=6))
    after = Tally(15, 3, latency(b0=6, b3=9))
    assert after.since(before) == Tally(5, 1, latency(b0=2, b3=3))


def test_counters_that_restarted_count_whole() -> None:
    """An instance forgotten and seen again starts its counters from zero."""
    before = Tally(10, 2, latency(b0=10))
    after = Tally(3, 0, latency(b1=3))
    assert after.since(before) == after


def test_service_tallies_sum_routes_and_statuses_and_leave_out_the_inbound_engine() -> None:
    metrics = Metrics()
    metrics.request_done("orders", "api", 200, "-", 0.002)
    metrics.request_done("orders", "default", 503, "NH", 0.0004)  # below half a millisecond
    metrics.request_done("orders", "default", 499, "DC", 0.3)  # the client left: no error
    metrics.request_done("", "", 404, "NR", 0.0001)  # no destination: not reported
    metrics.request_done("billing", "inbound", 200, "-", 0.01)  # our own inbound engine
    tallies = service_tallies(metrics, own="billing")
    assert tallies == {"orders": Tally(3, 1, latency(b0=1, b2=1, b8=1))}


def test_a_window_reports_what_was_forwarded_since_the_last_one() -> None:
    metrics, directory = Metrics(), Directory(node="gw-1")
    window = LoadWindow(metrics, directory, own="gateway", interval=1.0, now=100.0)
    for _ in range(8):
        metrics.request_done("orders", "default", 200, "-", 0.004)
    metrics.request_done("orders", "default", 502, "UF", 0.02)
    attempts(directory, "orders", "o1", 0.004, 8)
    attempts(directory, "orders", "o2", 0.02, 1, failed=True)
    directory.counters.of("orders", "o1").active += 2  # two attempts still going

    load = window(101.0)
    assert load.window == 1.0
    orders = load.services["orders"]
    assert (orders.requests, orders.errors, orders.inflight) == (9, 1, 0)
    assert orders.latency == [0, 0, 8, 0, 1]  # trailing zeros left out
    assert orders.instances["o1"] == InstanceTraffic(requests=8, inflight=2, latency=[0, 0, 8])
    assert orders.instances["o2"] == InstanceTraffic(requests=1, errors=1, latency=[0, 0, 0, 0, 1])

    # Within half an interval the same window is repeated (a sync's answer, say) ...
    metrics.request_done("orders", "default", 200, "-", 0.004)
    assert window(101.4) is load
    # ... and the next one counts only what came after the last.
    attempts(directory, "orders", "o1", 0.004, 1)
    nxt = window(102.5)
    assert nxt.window == 1.5
    assert nxt.services["orders"].requests == 1
    assert nxt.services["orders"].instances == {
        "o1": InstanceTraffic(requests=1, inflight=2, latency=[0, 0, 1])
    }


def test_an_idle_node_reports_nothing_but_its_window() -> None:
    window = LoadWindow(Metrics(), Directory(), own="gateway", interval=1.0, now=0.0)
    assert window(0.2) == Load()  # no window cut yet
    assert window(1.0) == Load(window=1.0)


def test_the_caps_keep_the_busiest_and_count_the_rest() -> None:
    services = {
        f"s{i:02}": Tally(i + 1, 0, latency(b0=i + 1)) for i in range(MAX_LOAD_SERVICES + 4)
    }
    instances = {
        (f"s{i:02}", f"s{i:02}-{j}"): InstanceTraffic(requests=i + j + 1)
        for i in range(MAX_LOAD_SERVICES + 4)
        for j in range(5)
    }
    load, omitted = capped(1.0, services, {}, instances)
    assert sorted(load.services) == [f"s{i:02}" for i in range(4, MAX_LOAD_SERVICES + 4)]
    kept = sum(len(s.instances) for s in load.services.values())
    assert kept == MAX_LOAD_INSTANCES
    assert omitted == load.omitted == 4 + (len(instances) - MAX_LOAD_INSTANCES)
    # The instances kept are the busiest ones.
    fewest = min(t.requests for s in load.services.values() for t in s.instances.values())
    dropped = [t.requests for (s, _), t in instances.items() if s in load.services]
    assert sorted(dropped, reverse=True)[MAX_LOAD_INSTANCES - 1] == fewest


def test_an_ejected_instance_is_reported_even_when_no_request_went_there() -> None:
    instances = {("orders", "o2"): InstanceTraffic(ejected=True)}
    load, omitted = capped(1.0, {}, {}, instances)
    assert omitted == 0
    assert load.services["orders"].instances == {"o2": InstanceTraffic(ejected=True)}


def test_requests_in_flight_alone_make_a_service_worth_reporting() -> None:
    load, _ = capped(1.0, {}, {"orders": 3, "idle": 0}, {})
    assert list(load.services) == ["orders"]
    assert load.services["orders"].inflight == 3


def sent(load: Load) -> Load:
    """`load` as watchers decode it, in a load report (InvalidMessage if they refuse it)."""
    report = load_report(load=load)
    decoded = decode(subjects.load(report.service, report.instance), encode(report))
    assert isinstance(decoded, type(report))
    return decoded.load


@pytest.mark.parametrize("interval", [0.001, 0.05, 0.2, 1.0, 60.0])
def test_every_window_a_node_cuts_is_one_the_wire_takes(interval: float) -> None:
    """Heartbeats every interval, from the very first, some late, syncs in between: the
    interval setting takes any positive value, the wire no window under MIN_LOAD_WINDOW."""
    window = LoadWindow(Metrics(), Directory(), own="gateway", interval=interval, now=1234.567)
    now, windows = 1234.567, set()
    for beat in range(200):
        now += interval * (1.3 if beat % 7 == 0 else 1.0)
        windows.add(sent(window(now)).window)
        windows.add(sent(window(now + interval / 10)).window)  # a sync's answer
    assert min(windows - {0.0}) >= MIN_LOAD_WINDOW
    assert sent(window(now + 86_400.0)).window == 3600.0  # after a day without NATS


def test_counts_beyond_the_wire_bound_are_sent_as_the_bound() -> None:
    """A window stretched by a long outage must still be a heartbeat the others take."""
    metrics, directory = Metrics(), Directory(node="gw-1")
    window = LoadWindow(metrics, directory, own="gateway", interval=1.0, now=0.0)
    huge = MAX_LOAD_COUNT * 5
    metrics.requests[("orders", "default", 503, "UF")] = huge
    metrics.durations[("orders", "default")] = [huge] * (len(BUCKETS) + 1)
    counters = directory.counters.of("orders", "o1")
    counters.active, counters.ended, counters.failed = huge, huge, huge
    counters.latency[:] = [huge] * len(counters.latency)

    orders = sent(window(1.0)).services["orders"]
    figures = [orders, orders.instances["o1"]]
    assert [(t.requests, t.errors, t.inflight) for t in figures] == [
        (MAX_LOAD_COUNT, MAX_LOAD_COUNT, 0),
        (MAX_LOAD_COUNT, MAX_LOAD_COUNT, MAX_LOAD_COUNT),
    ]
    assert all(t.latency == [MAX_LOAD_COUNT] * (len(BUCKETS) + 1) for t in figures)
