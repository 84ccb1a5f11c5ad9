"""bench.fanout's figures: the last node's arrival per change, over rounds (arithmetic)."""

from __future__ import annotations

import pytest

from bench.fanout_report import figures

WRITTEN = 1000.0


def change(*after_ms: float, cpu: float = 0.0) -> dict[str, object]:
    return {
        "written": WRITTEN,
        "arrivals": [WRITTEN + ms / 1000 for ms in after_ms],
        "server_cpu": cpu,
    }


def test_each_change_counts_its_last_node_and_its_median_node() -> None:
    rounds = [change(3, 1, 2, cpu=0.010), change(10, 4, 5, cpu=0.0), change(6, 8, 7, cpu=0.020)]
    found = figures(rounds)
    assert found["last_p50"] == pytest.approx(8)  # of 3, 10 and 8
    assert found["last_max"] == pytest.approx(10)
    assert found["last_p99"] == pytest.approx(10)
    assert found["node_p50"] == pytest.approx(5)  # of 2, 5 and 7
    assert found["server_cpu"] == pytest.approx(10)  # the mean: ticks of 10 ms
