"""mesh.observe.traffic: every caller's latest window merged into golden signals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from factories import heartbeat, load_report

from mesh.membership.view import Member, State
from mesh.messages import MAX_LOAD_COUNT, InstanceTraffic, Load, LoadReport, ServiceTraffic
from mesh.metrics import BUCKETS
from mesh.observe import board, traffic
from mesh.observe.traffic import InstanceRow, ServiceRow, Signals, quantile

# A member of the view, or a caller: its member and the load report it sent.
Entry = Member | tuple[Member, LoadReport]


def member(
    instance: str, service: str = "orders", state: State = State.ALIVE, **fields: Any
) -> Member:
    return Member(heartbeat(instance, service, **fields), state, 0.0, 0.0, 1)


def caller(
    name: str, window: float, state: State = State.ALIVE, **load: ServiceTraffic
) -> tuple[Member, LoadReport]:
    """A gateway that reported `load` (service -> figures) over `window` seconds."""
    report = load_report(name, "gateway", load=Load(window=window, services=load))
    return member(name, "gateway", state, role="gateway"), report


def split(entries: Sequence[Entry]) -> tuple[list[Member], dict[str, LoadReport]]:
    members = [e if isinstance(e, Member) else e[0] for e in entries]
    loads = {e[1].instance: e[1] for e in entries if not isinstance(e, Member)}
    return members, loads


def services(entries: Sequence[Entry]) -> list[ServiceRow]:
    return traffic.services(*split(entries))


def instances(entries: Sequence[Entry], service: str) -> list[InstanceRow]:
    return traffic.instances(*split(entries), service)


def counts(**at: int) -> list[int]:
    out = [0] * (len(BUCKETS) + 1)
    for name, count in at.items():
        out[int(name[1:])] = count
    return out


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [], None),  # no observations
        (0.5, counts(b0=10), 0.00025),  # halfway into (0, 0.5 ms]: below a millisecond
        (0.5, counts(b0=5, b1=5), 0.0005),  # the top of the first bucket
        (0.99, counts(b2=100), 0.00496),  # 99 % of the way from 1 ms to 5 ms
        (0.5, counts(b2=1, b3=3), 0.005 + 0.005 * (1 / 3)),
        (0.99, counts(b0=1, b13=99), 10.0),  # above the last bound: the last bound
        (0.5, [0, 4], 0.00075),  # trailing zeros left out, as on the wire
    ],
)
def test_quantiles_are_prometheus_histogram_quantile(
    q: float, buckets: list[int], expected: float | None
) -> None:
    found = quantile(q, buckets)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def test_a_service_sums_rates_over_callers_and_merges_their_histograms() -> None:
    members = [
        member("o1"),
        member("o2"),
        caller(
            "gw-1",
            2.0,
            orders=ServiceTraffic(requests=100, errors=5, inflight=3, latency=counts(b2=100)),
        ),
        caller(
            "gw-2",
            0.5,
            orders=ServiceTraffic(requests=50, errors=10, inflight=1, latency=counts(b5=50)),
        ),
    ]
    [row] = services(members)
    signals = row.signals
    assert signals.rate == pytest.approx(100 / 2.0 + 50 / 0.5)
    assert signals.success == pytest.approx(1 - 15 / 150)
    assert signals.inflight == 4
    assert (signals.requests, signals.errors, signals.callers) == (150, 15, 2)
    # 150 observations: the 75th is three quarters into (1, 5] ms, the 149th in (25, 50] ms.
    assert signals.p50 == pytest.approx(0.001 + 0.004 * 0.75)
    assert signals.p99 == pytest.approx(0.025 + 0.025 * (148.5 - 100) / 50)
    assert row.states == {"alive": 2}


@pytest.mark.parametrize(
    ("state", "window", "counted"),
    [
        (State.ALIVE, 1.0, True),
        (State.DRAINING, 1.0, True),  # a draining gateway still forwards
        (State.SUSPECT, 1.0, False),  # its last window is old news
        (State.DOWN, 1.0, False),
        (State.LEFT, 1.0, False),
        (State.ALIVE, 0.0, False),  # no window yet
    ],
)
def test_only_callers_heard_lately_with_a_window_count(
    state: State, window: float, counted: bool
) -> None:
    members = [member("o1"), caller("gw-1", window, state, orders=ServiceTraffic(requests=10))]
    [row] = services(members)
    assert row.signals.requests == (10 if counted else 0)


def test_figures_decoding_would_refuse_raise_nothing_and_count_as_the_bound() -> None:
    """Records made in process skip decoding's bounds (msgspec checks them only there):
    the reviewer's 10**400 and 1e-300, and NaN, give finite signals, never an error."""
    huge = 10**400
    absurd = ServiceTraffic(
        requests=huge,
        errors=huge,
        inflight=huge,
        latency=[huge] * (len(BUCKETS) + 1),
        instances={"o1": InstanceTraffic(requests=huge, errors=huge, latency=[huge])},
    )
    members = [
        member("o1"),
        caller("gw-1", 1.0, orders=absurd),
        caller("gw-2", 1e-300, orders=absurd),  # no window a node cuts: left out
        caller("gw-3", math.nan, orders=absurd),
    ]
    [row] = services(members)
    assert (row.signals.requests, row.signals.errors) == (MAX_LOAD_COUNT, MAX_LOAD_COUNT)
    assert (row.signals.rate, row.signals.success, row.signals.callers) == (1e9, 0.0, 1)
    assert row.signals.p99 == BUCKETS[-1]
    [o1] = instances(members, "orders")
    assert (o1.signals.rate, o1.signals.p50) == (1e9, BUCKETS[0] / 2)
    msgspec.json.encode(board.board("gw-1", *split(members), wall=0.0))  # the dashboard's frame


def test_a_report_of_another_incarnation_than_the_callers_is_not_counted() -> None:
    """A restarted caller's figures start afresh; its last life's report says nothing."""
    gateway, report = caller("gw-1", 1.0, orders=ServiceTraffic(requests=10))
    stale = msgspec.structs.replace(report, incarnation=0)
    [row] = services([member("o1"), (gateway, stale)])
    assert row.signals.requests == 0
    [row] = services([member("o1"), (gateway, report)])
    assert row.signals.requests == 10


def test_a_service_without_traffic_is_listed_with_empty_signals() -> None:
    [row] = services([member("o1"), member("o2", state=State.SUSPECT)])
    assert row.signals == Signals()
    assert row.states == {"alive": 1, "suspect": 1}


def test_instances_by_state_refine_alive_into_failing_and_ejected() -> None:
    members = [
        member("o1"),
        member("o2", health="failing"),
        member("o3"),
        member("o4", state=State.DRAINING, draining=True),
        member("o5", state=State.DOWN),
        member("b1", "billing"),
        caller(
            "gw-1",
            1.0,
            orders=ServiceTraffic(requests=4, instances={"o3": InstanceTraffic(ejected=True)}),
        ),
    ]
    by_service = {row.service: row.states for row in services(members)}
    assert by_service == {
        "billing": {"alive": 1},
        "orders": {"alive": 1, "failing": 1, "ejected": 1, "draining": 1, "down": 1},
    }


def test_instance_rows_merge_each_callers_attempts_on_it() -> None:
    members = [
        member("o1", zone="a", version="1.2"),
        member("o2"),
        caller(
            "gw-1",
            1.0,
            orders=ServiceTraffic(
                requests=10,
                instances={
                    "o1": InstanceTraffic(requests=6, latency=counts(b1=6)),
                    "o2": InstanceTraffic(requests=4, errors=4, ejected=True),
                },
            ),
        ),
        caller(
            "gw-2",
            2.0,
            orders=ServiceTraffic(
                requests=2, instances={"o1": InstanceTraffic(requests=2, inflight=1)}
            ),
        ),
        # A reported instance the view no longer holds still shows, as unknown.
        caller("gw-3", 1.0, orders=ServiceTraffic(instances={"o9": InstanceTraffic(requests=1)})),
    ]
    rows = {row.instance: row for row in instances(members, "orders")}
    assert sorted(rows) == ["o1", "o2", "o9"]
    o1 = rows["o1"]
    assert (o1.state, o1.address, o1.zone, o1.version) == ("alive", "10.0.0.1:9000", "a", "1.2")
    assert o1.signals.rate == pytest.approx(6 + 1)
    assert o1.signals.inflight == 1
    assert o1.signals.callers == 2
    assert rows["o2"].state == "ejected"
    assert rows["o2"].ejected_by == 1
    assert rows["o2"].signals.success == 0.0
    assert rows["o9"] == InstanceRow("orders", "o9", "unknown", "", "", "", rows["o9"].signals, 0)
    assert instances(members, "billing") == []


def test_gateways_are_callers_not_instances() -> None:
    members = [member("gw-1", "gateway", role="gateway")]
    assert services(members) == []
