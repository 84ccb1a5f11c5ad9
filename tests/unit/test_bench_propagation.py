"""bench.propagation's split of a confirmation into system and co-location, and its naming
of what did not come up (pure arithmetic, plus one socketpair for the arrival stamps)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest

from bench.arrivals import stamp as stamper_loop
from bench.propagation_run import Expected
from bench.propagation_split import arrival, find_stamp, per_apply, split, summary
from bench.tables import percentile

WRITTEN = 1000.0


def stamp(**changes: object) -> dict[str, object]:
    """Stored 1 ms after the write, on the socket at 3, handled 10-10.5, ack written at 20."""
    base: dict[str, object] = {
        "key": "service.bench-svc",
        "revision": 7,
        "stored": WRITTEN + 0.001,
        "arrived": WRITTEN + 0.003,
        "started": WRITTEN + 0.010,
        "swapped": WRITTEN + 0.0105,
        "cpu": 0.0004,
        "written": WRITTEN + 0.020,
    }
    return {**base, **changes}


def test_a_fleet_answer_splits_into_its_parts() -> None:
    parts = split(WRITTEN, WRITTEN + 0.025, stamp())
    assert parts["store"] == pytest.approx(1)
    assert parts["fanout"] == pytest.approx(2)
    assert parts["queued"] == pytest.approx(7 + 9.5)  # before the handler, before the write
    assert parts["work_wall"] == pytest.approx(0.5)
    assert parts["work_cpu"] == pytest.approx(0.4)
    assert parts["ack"] == pytest.approx(5)
    assert parts["total"] == pytest.approx(25)
    # What one agent per host would see: no queueing, its own CPU time as its work.
    assert parts["system"] == pytest.approx(1 + 2 + 0.4 + 5)
    wall_parts = ("store", "fanout", "queued", "work_wall", "ack")
    assert sum(parts[p] for p in wall_parts) == pytest.approx(parts["total"])


def test_steps_not_seen_count_as_the_systems_time() -> None:
    seen = split(WRITTEN, WRITTEN + 0.025, stamp())
    unseen = split(WRITTEN, WRITTEN + 0.025, stamp(arrived=None, written=None))
    assert unseen["queued"] == 0
    assert unseen["system"] > seen["system"]
    assert unseen["total"] == seen["total"]


def test_a_node_without_stamps_is_all_system() -> None:
    assert split(WRITTEN, WRITTEN + 0.030, None) == pytest.approx({"total": 30, "system": 30})


def test_the_last_answer_measured_and_as_one_agent_per_host() -> None:
    answers = {
        "fleet0-1": split(WRITTEN, WRITTEN + 0.025, stamp()),  # total 25, system 8.4
        "gw0-abc": split(WRITTEN, WRITTEN + 0.012, None),  # total = system = 12
    }
    last = per_apply(answers)
    assert (last["last_node"], last["last_ms"]) == ("fleet0-1", pytest.approx(25))
    assert (last["system_last_node"], last["system_last_ms"]) == ("gw0-abc", pytest.approx(12))
    assert last["colocation_ms"] == pytest.approx(13)
    result = summary([answers, answers])
    assert result["last"]["p99"] == pytest.approx(25)
    assert result["system_last"]["p50"] == pytest.approx(12)
    assert result["parts"]["fanout"]["max"] == pytest.approx(2)  # gateways have no parts


def test_stamps_are_found_by_key_and_revision() -> None:
    stamps = [stamp(revision=6), stamp()]
    assert find_stamp(stamps, "service.bench-svc", 7) is stamps[1]
    assert find_stamp(stamps, "service.bench-svc", 8) is None


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 99
    assert math.isnan(percentile([], 0.99))


def test_what_did_not_come_up_is_named_per_fleet() -> None:
    expected = Expected({"fleet0": ["fleet0-0", "fleet0-1"], "fleet1": ["fleet1-0"]}, 3)
    nodes = {"fleet0-0": "agent", "fleet1-0": "agent", "gw0-a": "gateway", "gw1-b": "gateway"}
    assert expected.missing(nodes) == ["fleet0: 1 of 2 nodes (fleet0-1)", "gateways: 1 of 3"]
    nodes.update({"fleet0-1": "agent", "gw2-c": "gateway"})
    assert expected.missing(nodes) == []


def test_the_arrival_is_the_last_between_storing_and_handling() -> None:
    times = [WRITTEN - 1, WRITTEN + 0.002, WRITTEN + 0.003, WRITTEN + 0.5]
    assert arrival(times, WRITTEN + 0.001, WRITTEN + 0.010) == WRITTEN + 0.003
    assert arrival(times[:1], WRITTEN + 0.001, WRITTEN + 0.010) is None


def test_arrivals_are_stamped_without_reading_the_sockets(tmp_path: Path) -> None:
    # The stamper's loop on a thread (bench.arrivals runs it as a process of its own).
    fleet, stamper = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    output = tmp_path / "arrivals.json"
    loop = threading.Thread(target=stamper_loop, args=(stamper, output))
    loop.start()
    ours, theirs = socket.socketpair()
    try:
        socket.send_fds(fleet, [b"node-1"], [ours.fileno()])
        socket.send_fds(fleet, [b"node-2"], [theirs.fileno()])
        before = time.time()
        theirs.send(b"x")
        fleet.send(b"dump")
        loop.join(2)
        assert ours.recv(1) == b"x"  # the data is still there for its reader
    finally:
        for s in (fleet, stamper, ours, theirs):
            s.close()
    stamps = json.loads(output.read_text())
    assert len(stamps["node-1"]) == 1
    assert stamps["node-1"][0] >= before
    assert stamps["node-2"] == []
