"""mesh.metrics: counters and gauges read at scrape time, rendered as Prometheus text."""

from __future__ import annotations

from mesh.metrics import Metrics, registry_for, render


def test_registered_counters_and_gauges_are_read_when_scraped() -> None:
    metrics = Metrics()
    opened = [0]
    metrics.counter("mesh_things_opened", "Things opened.", (), lambda: [((), float(opened[0]))])
    metrics.gauge("mesh_things_idle", "Things idle.", ("kind",), lambda: [(("a",), 2.0)])
    opened[0] = 3
    text = render(registry_for(metrics)).decode()
    assert "# TYPE mesh_things_opened_total counter" in text
    assert "mesh_things_opened_total 3.0" in text
    assert 'mesh_things_idle{kind="a"} 2.0' in text


def test_a_request_under_half_a_millisecond_has_a_bucket_of_its_own() -> None:
    metrics = Metrics()
    metrics.request_done("svc", "host", 200, "-", 0.0003)
    metrics.request_done("svc", "host", 200, "-", 0.0007)
    text = render(registry_for(metrics)).decode()
    labels = 'route="host",service="svc"'
    assert f'mesh_request_duration_seconds_bucket{{le="0.0005",{labels}}} 1.0' in text
    assert f'mesh_request_duration_seconds_bucket{{le="0.001",{labels}}} 2.0' in text
