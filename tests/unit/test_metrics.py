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
