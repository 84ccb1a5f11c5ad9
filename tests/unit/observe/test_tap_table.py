"""Which taps a node knows and which requests each wants: filters, sampling, TTL, the cap."""

from __future__ import annotations

import random

import msgspec
import pytest
from manual_clock import ManualClock

from mesh.messages import TapFilter, TapOpen
from mesh.observe.tap_table import OpenTap, RecordCap, TapTable

REQUEST = (b"GET", "orders", "api", b"/v1/x?q=1", 503)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (TapFilter(), True),
        (TapFilter(service="orders"), True),
        (TapFilter(service="billing"), False),
        (TapFilter(route="api"), True),
        (TapFilter(route="web"), False),
        (TapFilter(path_prefix="/v1/"), True),
        (TapFilter(path_prefix="/v2/"), False),
        (TapFilter(status="5xx"), True),
        (TapFilter(status="2xx"), False),
        (TapFilter(method="GET"), True),
        (TapFilter(method="POST"), False),
        (TapFilter(service="orders", method="GET", status="5xx", path_prefix="/v1"), True),
        (TapFilter(service="orders", method="POST", status="5xx"), False),  # all must match
    ],
)
def test_every_field_given_must_match(wanted: TapFilter, expected: bool) -> None:
    assert OpenTap("t1", wanted, 1.0, 10.0).wants(*REQUEST) is expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/v1/list", True),
        (b"http://orders/v1/list", True),  # through an agent's proxy: by its path
        (b"http://v1/list", False),  # the authority is not the path
        (b"/v2/list?next=/v1/", False),  # nor is the query
        (b"/v1", False),
    ],
)
def test_a_path_prefix_matches_the_path_alone(target: bytes, expected: bool) -> None:
    tap = OpenTap("t1", TapFilter(path_prefix="/v1/"), 1.0, 10.0)
    assert tap.wants(b"GET", "orders", "api", target, 200) is expected


def test_a_prefix_cannot_reach_into_a_query() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"path_prefix": "/a?b"}, TapFilter)


@pytest.mark.parametrize("route", ["x y", "", "a.b", "r" * 129])
def test_a_route_filter_is_a_route_name_or_nothing(route: str) -> None:
    """No route can be named so: a filter that could never match is refused."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"route": route}, TapFilter)


def test_a_tap_lives_a_minute_at_most_after_its_last_announcement() -> None:
    assert msgspec.convert({"id": "t1", "ttl": 60}, TapOpen).ttl == 60
    for ttl in (60.001, 3600):
        with pytest.raises(msgspec.ValidationError, match="ttl"):
            msgspec.convert({"id": "t1", "ttl": ttl}, TapOpen)


def opened(tap_id: str = "t1", ttl: float = 10.0, **changes: object) -> TapOpen:
    return TapOpen(id=tap_id, ttl=ttl, **changes)  # type: ignore[arg-type]


def wanting(table: TapTable, rng: random.Random | None = None) -> list[str]:
    """The taps that want REQUEST, after their sampling draws."""
    draw = rng or random.Random(1)
    return [tap.id for tap in table.taps.values() if tap.wants(*REQUEST) and tap.sampled(draw)]


def test_a_tap_is_forgotten_once_its_ttl_passed_without_a_renewal() -> None:
    clock, table = ManualClock(), TapTable(8)
    table.announced(opened(ttl=10.0), clock.now)
    clock.now += 9.9
    assert table.expire(clock.now) == []
    assert wanting(table) == ["t1"]
    clock.now += 0.1
    assert table.expire(clock.now) == ["t1"]
    assert wanting(table) == []


def test_a_renewal_pushes_the_end_back_and_keeps_what_is_pending() -> None:
    clock, table = ManualClock(), TapTable(8)
    table.announced(opened(ttl=10.0), clock.now)
    table.taps["t1"].dropped = 3
    clock.now += 8
    table.announced(opened(ttl=10.0, filter=TapFilter(method="POST")), clock.now)
    clock.now += 8  # 16 s after the first announcement, 8 after the renewal
    assert table.expire(clock.now) == []
    assert table.taps["t1"].dropped == 3
    assert wanting(table) == []  # the renewal's filter applies


def test_a_goodbye_forgets_at_once_and_an_unknown_one_changes_nothing() -> None:
    table = TapTable(8)
    table.announced(opened("t1"), 0.0)
    table.announced(opened("t2"), 0.0)
    table.announced(opened("t9", closing=True), 0.0)
    table.announced(opened("t1", closing=True), 0.0)
    assert wanting(table) == ["t2"]


def test_a_node_keeps_its_cap_of_taps_and_refuses_new_ones_beyond_it() -> None:
    table = TapTable(3)
    taken = [table.announced(opened(f"t{n}"), 0.0) for n in range(1000)]
    assert taken == [True] * 3 + [False] * 997
    assert list(table.taps) == ["t0", "t1", "t2"]
    assert table.announced(opened("t1", filter=TapFilter(method="POST")), 1.0)  # a renewal
    assert table.taps["t1"].filter.method == "POST"
    assert table.announced(opened("t0", closing=True), 1.0)  # a goodbye frees a slot
    assert table.announced(opened("t999", closing=True), 1.0)  # unknown: nothing to refuse
    assert table.announced(opened("t500"), 1.0)
    assert not table.announced(opened("t501"), 1.0)
    assert list(table.taps) == ["t1", "t2", "t500"]


def test_sampling_sends_the_share_a_seeded_draw_gives() -> None:
    table = TapTable(8)
    table.announced(opened("half", sample=0.5), 0.0)
    table.announced(opened("all"), 0.0)
    rng, expected_rng = random.Random(7), random.Random(7)
    counts = {"half": 0, "all": 0}
    for _ in range(1000):
        for tap_id in wanting(table, rng):
            counts[tap_id] += 1
    expected = sum(expected_rng.random() < 0.5 for _ in range(1000))  # one draw per request
    assert counts == {"half": expected, "all": 1000}
    assert 400 < expected < 600


def test_the_cap_takes_so_many_a_second_and_starts_again_the_next() -> None:
    clock, cap = ManualClock(), RecordCap(3)
    cap.tick(clock.now)
    assert [cap.take() for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.99
    cap.tick(clock.now)  # the same window
    assert not cap.take()
    clock.now += 0.01
    cap.tick(clock.now)
    assert [cap.take() for _ in range(4)] == [True, True, True, False]
