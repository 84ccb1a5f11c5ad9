"""gateway.fleet_metrics: workers' counts summed and never decreasing, gauges per worker."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.fleet_metrics import FleetMetrics


def page(requests: float, started: float = 100.0, members: float = 1.0, extra: str = "") -> str:
    """A worker's /metrics: a counter, a histogram, a gauge and its start time."""
    return (
        "# HELP mesh_requests_total Requests answered.\n"
        "# TYPE mesh_requests_total counter\n"
        f'mesh_requests_total{{service="hello",code="200"}} {requests}\n'
        f"{extra}"
        "# HELP mesh_request_duration_seconds Time.\n"
        "# TYPE mesh_request_duration_seconds histogram\n"
        f'mesh_request_duration_seconds_bucket{{le="0.1"}} {requests}\n'
        f'mesh_request_duration_seconds_bucket{{le="+Inf"}} {requests}\n'
        f"mesh_request_duration_seconds_count {requests}\n"
        f"mesh_request_duration_seconds_sum {requests / 100}\n"
        "# HELP mesh_members Members in this node's view.\n"
        "# TYPE mesh_members gauge\n"
        f'mesh_members{{service="hello"}} {members}\n'
        "# HELP process_start_time_seconds Start time of the process.\n"
        "# TYPE process_start_time_seconds gauge\n"
        f"process_start_time_seconds {started}\n"
    )


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


REQUESTS = ("mesh_requests_total", (("code", "200"), ("service", "hello")))
COUNT = ("mesh_request_duration_seconds_count", ())


def test_counters_and_histograms_are_summed_and_gauges_keep_each_workers_value() -> None:
    merged = samples(FleetMetrics().merge([("0", page(3, members=1)), ("1", page(4, members=2))]))
    assert merged[REQUESTS] == 7
    assert merged[COUNT] == 7
    assert merged[("mesh_request_duration_seconds_bucket", (("le", "0.1"),))] == 7
    assert merged[("mesh_request_duration_seconds_sum", ())] == 0.07
    assert merged[("mesh_members", (("service", "hello"), ("worker", "0")))] == 1
    assert merged[("mesh_members", (("service", "hello"), ("worker", "1")))] == 2
    assert not any(("worker", "0") in labels for name, labels in merged if name == REQUESTS[0])


def test_a_restarted_worker_adds_to_what_it_had_counted() -> None:
    fleet = FleetMetrics()
    fleet.merge([("0", page(10)), ("1", page(5))])
    # Worker 1 restarted (new start time) and has counted 7 since: more than before, which
    # only the start time shows.
    assert samples(fleet.merge([("0", page(12)), ("1", page(7, started=200))]))[REQUESTS] == 24
    assert samples(fleet.merge([("0", page(12)), ("1", page(8, started=200))]))[REQUESTS] == 25


def test_a_count_that_goes_down_is_a_restart_even_with_the_same_start_time() -> None:
    fleet = FleetMetrics()
    fleet.merge([("0", page(10))])
    assert samples(fleet.merge([("0", page(2))]))[REQUESTS] == 12


def test_a_silent_worker_is_held_at_its_last_counts_and_not_counted_twice() -> None:
    fleet = FleetMetrics()
    fleet.merge([("0", page(10)), ("1", page(5))])
    held = samples(fleet.merge([("0", page(11)), ("1", None)]))
    assert held[REQUESTS] == 16
    assert ("mesh_members", (("service", "hello"), ("worker", "1"))) not in held
    assert samples(fleet.merge([("0", page(11)), ("1", page(6))]))[REQUESTS] == 17


def test_a_series_a_worker_forgets_is_kept_while_another_has_it_then_goes() -> None:
    orders = (
        "# HELP mesh_upstream_retries_total Retries.\n"
        "# TYPE mesh_upstream_retries_total counter\n"
        'mesh_upstream_retries_total{{mesh_instance="i1"}} {n}\n'
    )
    retries = ("mesh_upstream_retries_total", (("mesh_instance", "i1"),))
    fleet = FleetMetrics()
    fleet.merge(
        [("0", page(1, extra=orders.format(n=4))), ("1", page(1, extra=orders.format(n=2)))]
    )
    kept = samples(fleet.merge([("0", page(1)), ("1", page(1, extra=orders.format(n=3)))]))
    assert kept[retries] == 7
    assert retries not in samples(fleet.merge([("0", page(1)), ("1", page(1))]))
