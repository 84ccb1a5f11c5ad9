"""bench.propagation's split of a confirmation into system, co-location and the collector's
wait, its naming of what did not come up, and the marks that time each message on a
socket (pure arithmetic and parsing, plus socketpairs for the stamper)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest

from bench.arrivals import stamp as stamper_loop
from bench.marks import event_mark, first_seen, kv_mark, marks, note_reads
from bench.propagation_run import Expected
from bench.propagation_split import find_stamp, per_apply, split, summary
from bench.propagation_stamps import sighting
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
    # Heard on the collector's socket at 23 ms, handled by the collector at 25.
    parts = split(WRITTEN, WRITTEN + 0.025, WRITTEN + 0.023, stamp())
    assert parts["store"] == pytest.approx(1)
    assert parts["fanout"] == pytest.approx(2)
    assert parts["queued"] == pytest.approx(7 + 9.5)  # before the handler, before the write
    assert parts["work_wall"] == pytest.approx(0.5)
    assert parts["work_cpu"] == pytest.approx(0.4)
    assert parts["ack"] == pytest.approx(3)
    assert parts["collect"] == pytest.approx(2)
    assert parts["total"] == pytest.approx(25)
    # What one agent per host would see: no queueing, its own CPU time as its work, and
    # not the benchmark's collector's wait either.
    assert parts["system"] == pytest.approx(1 + 2 + 0.4 + 3)
    wall_parts = ("store", "fanout", "queued", "work_wall", "ack", "collect")
    assert sum(parts[p] for p in wall_parts) == pytest.approx(parts["total"])


def test_steps_not_seen_count_as_the_systems_time() -> None:
    seen = split(WRITTEN, WRITTEN + 0.025, WRITTEN + 0.023, stamp())
    unseen = split(WRITTEN, WRITTEN + 0.025, None, stamp(arrived=None, written=None))
    assert unseen["queued"] == 0
    assert unseen["collect"] == 0
    assert unseen["system"] > seen["system"]
    assert unseen["total"] == seen["total"]


def test_a_node_without_stamps_is_all_system_but_the_collectors_wait() -> None:
    parts = split(WRITTEN, WRITTEN + 0.030, WRITTEN + 0.026, None)
    assert parts == pytest.approx({"collect": 4, "total": 30, "system": 26})


def test_the_last_answer_measured_on_the_socket_and_as_one_agent_per_host() -> None:
    answers = {
        # total 25, on the collector's socket at 23, system 6.4
        "fleet0-1": split(WRITTEN, WRITTEN + 0.025, WRITTEN + 0.023, stamp()),
        "gw0-abc": split(WRITTEN, WRITTEN + 0.012, WRITTEN + 0.011, None),  # system 11
    }
    last = per_apply(answers)
    assert (last["last_node"], last["last_ms"]) == ("fleet0-1", pytest.approx(25))
    assert (last["system_last_node"], last["system_last_ms"]) == ("gw0-abc", pytest.approx(11))
    assert last["colocation_ms"] == pytest.approx(23 - 11)
    assert last["collect_ms"] == pytest.approx(25 - 23)
    result = summary([answers, answers])
    assert result["last"]["p99"] == pytest.approx(25)
    assert result["system_last"]["p50"] == pytest.approx(11)
    assert result["collect"]["p50"] == pytest.approx(2)
    assert result["parts"]["fanout"]["max"] == pytest.approx(2)  # gateways have no fanout


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


# A revision as a consumer delivers it: stream, consumer, delivered, sequence, ...
REVISION = (
    b"HMSG $KV.mesh_policies.service.bench-svc 5 "
    b"$JS.ACK.KV_mesh_policies.c1.1.7.7.1796049651565268800.0 58 70\r\n"
)
ACK_ID = "policy.applied:service.bench-svc:7:fleet0-1"
ACK = (
    b"HMSG mesh.v1.events.policy.applied.bench-svc 1 70 300\r\nNATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n"
    % ACK_ID.encode()
)


def test_a_revision_and_an_acknowledgement_are_named_by_their_marks() -> None:
    assert list(marks(REVISION + ACK)) == [
        kv_mark("mesh_policies", 7),
        event_mark(ACK_ID),
    ]
    # The reply's longer form (a domain and an account hash first, a token last).
    longer = b"MSG s 1 $JS.ACK.hub.ACCHASH.KV_mesh_policies.c1.1.9.9.179.0.tok 2\r\n"
    assert list(marks(longer)) == [kv_mark("mesh_policies", 9)]


def test_a_message_cut_short_gives_no_mark_until_the_rest_comes() -> None:
    assert list(marks(REVISION[:60])) == []  # the reply's sequence is not all there
    assert list(marks(ACK[: ACK.index(b"fleet0-1") + 5])) == []  # the id is not all there


class Reader:
    def __init__(self) -> None:
        self.fed = b""

    def feed_data(self, data: bytes) -> None:
        self.fed += data


def test_a_reader_notes_each_mark_once_even_across_reads() -> None:
    reader, seen = Reader(), dict[str, float]()
    note_reads(reader, seen)
    cut = REVISION.index(b".7.7.")
    reader.feed_data(REVISION[:cut])
    assert seen == {}
    reader.feed_data(REVISION[cut:])
    first = seen[kv_mark("mesh_policies", 7)]
    reader.feed_data(REVISION)  # the same revision again (redelivered): the first time stays
    assert seen == {kv_mark("mesh_policies", 7): first}
    assert reader.fed == REVISION * 2  # every byte still reaches nats-py


def test_the_earliest_sighting_is_the_arrival() -> None:
    assert first_seen(WRITTEN + 0.002, WRITTEN + 0.001) == WRITTEN + 0.001
    assert first_seen(None, WRITTEN + 0.003) == WRITTEN + 0.003
    assert first_seen(None, None) is None
    assert [sighting(1.0, 2.0), sighting(2.0, 1.0), sighting(None, 1.0)] == [
        "stamper",
        "read",
        "read",
    ]
    assert sighting(None, None) == "none"


def test_arrivals_are_stamped_by_their_marks_without_reading_the_sockets(
    tmp_path: Path,
) -> None:
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
        theirs.send(REVISION)
        theirs.send(ACK)
        time.sleep(0.05)  # the stamper's turn; a dump in the same batch comes after them
        fleet.send(b"dump")
        loop.join(2)
        assert ours.recv(4096) == REVISION + ACK  # the data is still there for its reader
    finally:
        for s in (fleet, stamper, ours, theirs):
            s.close()
    stamps = json.loads(output.read_text())
    seen = stamps["marks"]["node-1"]
    assert set(seen) == {kv_mark("mesh_policies", 7), event_mark(ACK_ID)}
    assert all(before <= at <= time.time() for at in seen.values())
    assert stamps["marks"]["node-2"] == {}
    assert stamps["scheduling"] == "normal"
