"""mesh.resilience.outlier: streaks, durations, decay, the cap, expiry, as tables and properties."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.resilience import outcome as o
from mesh.resilience.outcome import Outcome
from mesh.resilience.outlier import (
    Capped,
    Effect,
    Ejected,
    Ejections,
    OutlierConfig,
    Restored,
)

RESET_UNSENT = o.Outcome(o.Kind.RESET)  # closed before a byte of the request was written
OK = o.response(200)


def feed(
    ejections: Ejections,
    *outcomes: Outcome,
    instance: str = "i1",
    now: float = 0.0,
    total: int = 10,
) -> list[Effect]:
    effects: list[Effect] = []
    for outcome in outcomes:
        effects.extend(ejections.observe(instance, outcome, now, total))
    return effects


def s(*statuses: int) -> list[Outcome]:
    return [o.response(status) for status in statuses]


# --- detectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "reason"),
    [
        (s(503, 503, 503, 503), None),
        (s(503, 503, 503, 503, 503), "consecutive-gateway-errors"),
        (s(502, 504, 503, 502, 504), "consecutive-gateway-errors"),
        (s(500, 500, 500, 500, 500), "consecutive-5xx"),
        (s(500, 503, 503, 503, 503), "consecutive-5xx"),  # 5 in a row of 5xx, 4 gateway
        (s(503, 503, 503, 503, 200, 503, 503, 503, 503), None),  # success resets
        (s(503, 503, 503, 503, 404, 503, 503, 503, 503), None),  # so does any non-5xx
        ([o.REFUSED], "refused"),  # a process that is gone: at once
        ([o.RESET], "reset"),
        ([RESET_UNSENT], "reset"),
        ([o.CONNECT_FAILURE] * 4, None),
        ([o.CONNECT_FAILURE] * 5, "consecutive-gateway-errors"),
        ([o.TIMEOUT] * 5, "consecutive-gateway-errors"),
        ([o.TIMEOUT, *s(503, 502), o.CONNECT_FAILURE, *s(504)], "consecutive-gateway-errors"),
        ([o.TIMEOUT, *s(500, 500), o.CONNECT_FAILURE, *s(599)], "consecutive-5xx"),
    ],
)
def test_detectors(outcomes: list[Outcome], reason: str | None) -> None:
    effects = feed(Ejections(OutlierConfig()), *outcomes)
    assert effects == ([] if reason is None else [Ejected("i1", 30.0, reason)])


def test_a_500_resets_the_gateway_streak() -> None:
    ejections = Ejections(OutlierConfig(consecutive_5xx=0))
    assert feed(ejections, *s(503, 503, 503, 503, 500, 503, 503, 503, 503)) == []
    assert feed(ejections, o.response(503)) == [Ejected("i1", 30.0, "consecutive-gateway-errors")]


def test_detectors_off() -> None:
    ejections = Ejections(OutlierConfig(consecutive_5xx=0, consecutive_gateway_errors=0))
    assert feed(ejections, *s(*[503] * 100), *[o.TIMEOUT] * 100) == []
    assert feed(ejections, o.REFUSED) == [Ejected("i1", 30.0, "refused")]


def test_streaks_are_per_instance() -> None:
    ejections = Ejections(OutlierConfig())
    for _ in range(4):
        assert feed(ejections, o.response(503), instance="i1") == []
        assert feed(ejections, o.response(503), instance="i2") == []
    assert feed(ejections, OK, instance="i2") == []
    assert feed(ejections, o.response(503), instance="i1") != []
    assert feed(ejections, o.response(503), instance="i2") == []


def test_success_is_allocation_free() -> None:
    ejections = Ejections(OutlierConfig())
    assert ejections.observe("i1", OK, 0.0, 10) is ejections.observe("i1", OK, 0.0, 10)


def test_answers_during_an_ejection_are_ignored() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED)
    assert feed(ejections, *s(*[503] * 10), o.REFUSED, now=29.9) == []
    assert ejections.expire(30.0) == [Restored("i1")]
    assert feed(ejections, *s(503, 503, 503, 503), now=31.0) == []  # a fresh streak


# --- durations and decay ------------------------------------------------------------------


def test_durations_grow_to_the_cap() -> None:
    ejections = Ejections(OutlierConfig())
    now, durations = 0.0, []
    for _ in range(12):
        (effect,) = ejections.eject("i1", "test", now, 10)
        assert isinstance(effect, Ejected)
        durations.append(effect.until - now)
        now = effect.until  # re-ejected the moment it comes back: no time to be forgiven
        assert ejections.expire(now) == [Restored("i1")]
    assert durations == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]


@pytest.mark.parametrize(
    ("healthy", "next_duration"),
    [(0, 120), (29.9, 120), (30, 90), (59.9, 90), (60, 60), (90, 30), (1000, 30)],
)
def test_the_multiplier_steps_down_while_healthy(healthy: float, next_duration: float) -> None:
    ejections = Ejections(OutlierConfig())
    now = 0.0
    for _ in range(3):  # ejected 3 times in a row: 30 + 60 + 90 s
        (effect,) = ejections.eject("i1", "test", now, 10)
        assert isinstance(effect, Ejected)
        now = effect.until
        ejections.expire(now)
    assert ejections.eject("i1", "test", now + healthy, 10) == [
        Ejected("i1", now + healthy + next_duration, "test")
    ]


def test_the_multiplier_stops_at_the_cap() -> None:
    """Past max_ejection more ejections do not pile up: decay starts from the cap."""
    ejections = Ejections(OutlierConfig(base_ejection=30.0, max_ejection=60.0))
    now = 0.0
    for _ in range(10):
        (effect,) = ejections.eject("i1", "test", now, 10)
        assert isinstance(effect, Ejected)
        now = effect.until
        ejections.expire(now)
    # Two base periods forgive two steps: back to the base, not 8 steps above the cap.
    assert ejections.eject("i1", "test", now + 60.0, 10) == [Ejected("i1", now + 90.0, "test")]


# --- the cap ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "percent", "most"),
    [
        (1, 50, 0),  # a lone instance is never ejected: that would be an outage
        (2, 50, 1),
        (3, 50, 1),
        (4, 50, 2),
        (10, 50, 5),
        (10, 0, 0),
        (10, 100, 10),
        (5, 20, 1),
        (3, 100, 3),
        (7, 30, 2),
    ],
)
def test_cap(total: int, percent: int, most: int) -> None:
    ejections = Ejections(OutlierConfig(max_ejected_percent=percent))
    effects = [
        e for i in range(total) for e in feed(ejections, o.REFUSED, instance=f"i{i}", total=total)
    ]
    assert [e.instance for e in effects if isinstance(e, Ejected)] == [f"i{i}" for i in range(most)]
    assert [e for e in effects if isinstance(e, Capped)] == [
        Capped(f"i{i}", "refused", "max-ejected-percent") for i in range(most, total)
    ]


def test_a_capped_instance_is_ejected_once_room_frees() -> None:
    ejections = Ejections(OutlierConfig())
    assert feed(ejections, o.REFUSED, instance="a", total=2) == [Ejected("a", 30.0, "refused")]
    assert feed(ejections, o.REFUSED, instance="b", total=2, now=1.0) == [
        Capped("b", "refused", "max-ejected-percent")
    ]
    assert feed(ejections, o.REFUSED, instance="b", total=2, now=30.0) == [
        Restored("a"),
        Ejected("b", 60.0, "refused"),
    ]


def test_a_capped_streak_starts_over() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED, instance="a", total=2)
    assert feed(ejections, *s(*[503] * 5), instance="b", total=2) == [
        Capped("b", "consecutive-gateway-errors", "max-ejected-percent")
    ]
    assert feed(ejections, *s(*[503] * 4), instance="b", total=2) == []


def test_forget_frees_room_and_history() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED, instance="a", total=2)
    ejections.forget("a")
    assert not ejections.is_ejected("a", 1.0)
    assert feed(ejections, o.REFUSED, instance="b", total=2, now=1.0) == [
        Ejected("b", 31.0, "refused")
    ]
    assert ejections.expire(100.0) == [Restored("b")]


# --- expiry -------------------------------------------------------------------------------


def test_is_ejected_until_the_instant_it_ends() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED, now=5.0)
    assert not ejections.is_ejected("i2", 5.0)
    assert ejections.is_ejected("i1", 5.0)
    assert ejections.is_ejected("i1", 34.999)
    assert not ejections.is_ejected("i1", 35.0)  # before expire(): the time decides


def test_expire() -> None:
    ejections = Ejections(OutlierConfig(max_ejected_percent=100))
    feed(ejections, o.REFUSED, instance="a", now=0.0)
    feed(ejections, o.REFUSED, instance="b", now=10.0)
    assert ejections.expire(29.0) == []
    assert ejections.expire(30.0) == [Restored("a")]
    assert ejections.expire(30.0) == []
    assert ejections.expire(100.0) == [Restored("b")]
    assert ejections.expire(200.0) == []


def test_a_lapsed_ejection_is_restored_before_the_next() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED)
    assert feed(ejections, o.RESET, now=40.0) == [
        Restored("i1"),
        Ejected("i1", 40.0 + 60.0, "reset"),
    ]


def test_external_eject_of_an_ejected_instance() -> None:
    ejections = Ejections(OutlierConfig())
    feed(ejections, o.REFUSED)
    assert ejections.eject("i1", "evidence-reset", 1.0, 10) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"consecutive_5xx": -1},
        {"consecutive_gateway_errors": -1},
        {"base_ejection": 0.0},
        {"base_ejection": 40.0, "max_ejection": 30.0},
        {"max_ejected_percent": 101},
        {"max_ejected_percent": -1},
    ],
)
def test_config_rejects(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"streak|ejection|percent"):
        OutlierConfig(**fields)  # type: ignore[arg-type]


def test_defaults() -> None:
    assert OutlierConfig() == OutlierConfig(5, 5, 30.0, 300.0, 50)


# --- properties -----------------------------------------------------------------------------

OUTCOMES = [OK, o.REFUSED, o.RESET, o.TIMEOUT, o.CONNECT_FAILURE, *s(500, 502, 503, 504)]
INSTANCES = [f"i{i}" for i in range(8)]
Op = tuple[str, int, Outcome, float]  # (what, which instance, outcome, time step)

ops = st.lists(
    st.tuples(
        st.sampled_from(["observe", "observe", "observe", "eject", "expire", "forget"]),
        st.integers(0, len(INSTANCES) - 1),
        st.sampled_from(OUTCOMES),
        st.sampled_from([0.0, 0.0, 0.5, 7.0, 31.0]),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(1, len(INSTANCES)),
    percent=st.integers(0, 100),
    threshold=st.integers(0, 4),
    ops=ops,
)
def test_the_cap_holds_and_effects_pair_up(
    total: int, percent: int, threshold: int, ops: list[Op]
) -> None:
    config = OutlierConfig(threshold, threshold, 30.0, 300.0, percent)
    ejections = Ejections(config)
    pool = INSTANCES[:total]
    ejected: set[str] = set()  # what the effects said so far
    now = 0.0
    for what, index, outcome, step in ops:
        now += step
        instance = pool[index % total]
        effects: Sequence[Effect] = []
        if what == "observe":
            effects = ejections.observe(instance, outcome, now, total)
        elif what == "eject":
            effects = ejections.eject(instance, "test", now, total)
        elif what == "expire":
            effects = ejections.expire(now)
        else:
            ejections.forget(instance)
            ejected.discard(instance)
        for effect in effects:
            if isinstance(effect, Ejected):
                assert effect.instance not in ejected
                assert effect.until > now
                ejected.add(effect.instance)
            elif isinstance(effect, Restored):
                assert effect.instance in ejected
                ejected.remove(effect.instance)
        in_force = {i for i in pool if ejections.is_ejected(i, now)}
        assert in_force <= ejected
        assert len(ejected) * 100 <= percent * total
