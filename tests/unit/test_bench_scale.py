"""bench.scale's arithmetic: the simulated fleet's layout, /metrics and /connz readings."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.natsmon import named, traffic, traffic_of
from bench.records import UNCALLED_PORT, layout, shares, victims
from bench.scale_report import summarise, upkeep
from bench.simulator import parse_callees
from bench.views import alive_members, held, losses_seen

CALLEES = {"callee-0": 9001, "callee-1": 9002}


def test_layout_puts_the_called_services_first_at_their_real_ports() -> None:
    records = layout(100, per_service=30, callees=CALLEES, callee_instances=3)
    assert len(records) == 100
    assert len({r.instance for r in records}) == 100  # instance ids are mesh-wide
    assert [(r.service, r.port) for r in records[:4]] == [
        ("callee-0", 9001),
        ("callee-0", 9001),
        ("callee-0", 9001),
        ("callee-1", 9002),
    ]
    filler = Counter(r.service for r in records[6:])
    assert filler == {"sim-0000": 30, "sim-0001": 30, "sim-0002": 30, "sim-0003": 4}
    assert {r.port for r in records[6:]} == {UNCALLED_PORT}


def test_a_fleet_smaller_than_the_called_services_is_cut() -> None:
    assert len(layout(4, per_service=30, callees=CALLEES, callee_instances=3)) == 4


def test_shares_cover_every_record_once_sizes_within_one() -> None:
    ranges = shares(10, 4)
    assert [len(r) for r in ranges] == [3, 3, 2, 2]
    assert [i for r in ranges for i in r] == list(range(10))


def test_victims_take_one_per_service_in_turn() -> None:
    records = layout(100, per_service=30, callees=CALLEES, callee_instances=3)
    chosen = victims(records, 8)
    # 6 services: one each (the last record), then the second-last of the first two.
    assert Counter(r.service for r in chosen) == {
        "callee-0": 2,
        "callee-1": 2,
        "sim-0000": 1,
        "sim-0001": 1,
        "sim-0002": 1,
        "sim-0003": 1,
    }
    assert chosen[0].instance == "callee-0-2"
    assert len(victims(records[:5], 100)) == 5  # never more than there are


def test_parse_callees() -> None:
    assert parse_callees("a=1,b=2") == {"a": 1, "b": 2}
    assert parse_callees("") == {}


METRICS = """\
# HELP mesh_members Members in this node's view.
# TYPE mesh_members gauge
mesh_members{service="a",state="alive"} 28.0
mesh_members{service="a",state="suspect"} 2.0
mesh_members{service="b",state="alive"} 5.0
# HELP mesh_bus_connected 1 while connected to NATS.
# TYPE mesh_bus_connected gauge
mesh_bus_connected 1.0
"""


def test_alive_members_counts_only_the_alive_state() -> None:
    assert alive_members(METRICS) == {"a": 28, "b": 5}


def test_held_caps_each_service_at_its_fleet_count() -> None:
    assert held({"a": 28, "b": 5, "other": 9}, {"a": 30, "b": 3}) == 31


def test_losses_seen_once_each_service_dropped_by_its_losses() -> None:
    before = {"a": 30, "b": 5}
    lost = {"a": 2, "b": 1, "c": 4}  # c: not in this view, counts as seen
    assert not losses_seen({"a": 29, "b": 4}, before, lost)
    assert losses_seen({"a": 28, "b": 4}, before, lost)
    assert losses_seen({"a": 0}, {"a": 1}, {"a": 3})  # a partial view: nothing left is enough


def test_traffic_is_from_the_observers_side() -> None:
    before = {"in_msgs": 10, "in_bytes": 1000, "out_msgs": 100, "out_bytes": 30_000}
    after = {"in_msgs": 12, "in_bytes": 1600, "out_msgs": 2100, "out_bytes": 630_000}
    rates = traffic(before, after, 2.0)
    assert (rates.received_msgs, rates.received_bytes) == (1000, 300_000)
    assert (rates.sent_msgs, rates.sent_bytes) == (1, 300)


def test_traffic_of_a_connection_that_reconnected_is_unknown() -> None:
    first = {
        "gateway:gw0:a": {"cid": 4, "in_msgs": 0, "in_bytes": 0, "out_msgs": 0, "out_bytes": 0}
    }
    again = {"gateway:gw0:a": {**first["gateway:gw0:a"], "cid": 9, "out_msgs": 7}}
    assert traffic_of(first, again, "gateway:gw0:", 1.0) is None  # counters restarted
    assert traffic_of(first, {}, "gateway:gw0:", 1.0) is None  # cut off meanwhile
    assert traffic_of(first, first, "gateway:gw0:", 1.0) is not None


def test_named_finds_one_connection_by_prefix() -> None:
    connections = {"gateway:gw0:gw0-ab12": {"cid": 1}, "agent:caller-0:x": {"cid": 2}}
    assert named(connections, "gateway:gw0:") == {"cid": 1}
    with pytest.raises(KeyError):
        named(connections, "gateway:gw1:")
    with pytest.raises(ValueError, match="2 NATS connections"):
        named({**connections, "gateway:gw0:other": {"cid": 3}}, "gateway:gw0:")


def _rates(msgs: float) -> dict[str, float]:
    return {"received_msgs": msgs, "received_bytes": msgs * 300, "sent_msgs": 1, "sent_bytes": 300}


def test_summary_subtracts_the_idle_baseline_and_takes_the_worst_agent() -> None:
    window = {"cpu": {}, "traffic": {}, "rss": {"gw0": 64 * 2**20}, "load_average": 2.0}
    idle = {
        **window,
        "cpu": {"gw0": 0.01, "agent-0": 0.002, "agent-1": 0.003},
        "traffic": {"gw0": _rates(4), "agent-0": _rates(4), "agent-1": _rates(4)},
    }
    busy = {
        **window,
        "cpu": {"gw0": 0.31, "agent-0": 0.012, "agent-1": 0.05},
        "traffic": {"gw0": _rates(1000), "agent-0": _rates(10), "agent-1": _rates(30)},
        "rss": {"gw0": 96 * 2**20},
        "fleet_sent_msgs": 1000.0,
    }
    run = {
        "instances": 1000,
        "idle": idle,
        "busy": busy,
        "views_held": {},
        "first_gateway": {"full_s": 1.5},
        "second_gateway": {"full_s": 3.0, "connected_s": 2.25, "admin_s": 2.5, "held": 900},
        "killed": 100,
        "out_of_view_s": {"gw0": 3.1, "agent-0": 3.3, "agent-1": math.nan},
        "load": {"latencies_s": [0.001 * i for i in range(1, 101)], "errors": ["503 -"]},
    }
    assert upkeep(run, "gw0") == pytest.approx(0.30)
    summary = summarise(run)
    assert summary["agent_upkeep_core_max"] == pytest.approx(0.047)
    # Per message received beyond the empty fleet's: 0.30 s / 996 messages, 0.047 s / 26.
    assert summary["gateway_us_per_message"] == pytest.approx(301.2, abs=0.1)
    assert summary["agent_us_per_message_max"] == pytest.approx(1807.7, abs=0.1)
    assert summary["gateway_rss_mib"] == [64, 96]
    assert summary["agent_received_msgs_mean"] == 20
    assert summary["gateway_received_bytes"] == 300_000
    assert summary["new_gateway_fill_s"] == pytest.approx(0.75)
    assert math.isnan(summary["out_of_every_view_s"])  # one view never lost them
    assert summary["out_of_gateway_view_s"] == 3.1
    assert (summary["requests"], summary["errors"]) == (101, 1)
    assert summary["p99_ms"] == pytest.approx(99)
