"""mesh.resilience.evidence: what we publish, and ejecting on others' evidence under caps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.messages import Evidence, Signal
from mesh.resilience import outcome as o
from mesh.resilience.evidence import EvidenceConfig, Jury, Publisher
from mesh.resilience.outcome import Outcome
from mesh.resilience.outlier import Capped, Effect, Ejected, Ejections, OutlierConfig, Restored

RESET_UNSENT = o.Outcome(o.Kind.RESET)  # closed before a byte of the request was written

CONFIG = EvidenceConfig()


def ev(signal: Signal, instance: str = "i1", observer: str = "a", streak: int = 1) -> Evidence:
    return Evidence(
        service="orders", instance=instance, observer=observer, signal=signal, streak=streak
    )


def published(publisher: Publisher, *outcomes: Outcome, now: float = 0.0) -> list[Any]:
    """(signal, streak) of what each outcome published, None where nothing was."""
    out: list[Any] = []
    for outcome in outcomes:
        sent = publisher.should_publish("i1", outcome, now)
        out.append(None if sent is None else (sent.signal, sent.streak))
    return out


# --- Publisher ----------------------------------------------------------------------------


def test_publishes_evidence_about_us_and_the_instance() -> None:
    publisher = Publisher(CONFIG, "orders", "gw-1")
    assert publisher.should_publish("i1", o.REFUSED, 0.0) == Evidence(
        service="orders", instance="i1", observer="gw-1", signal="refused", streak=1
    )


F = o.response(503)
E500 = o.response(500)
OK = o.response(200)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([o.REFUSED], [("refused", 1)]),
        ([o.RESET], [("reset", 1)]),
        ([RESET_UNSENT], [("reset", 1)]),
        ([o.REFUSED, o.REFUSED], [("refused", 1), None]),  # de-duplicated
        ([o.REFUSED, o.RESET], [("refused", 1), ("reset", 1)]),  # another signal
        ([F, F, F], [None, None, ("5xx", 3)]),  # a vote
        ([F, F, F, F, F, F], [None, None, ("5xx", 3), None, ("5xx", 5), None]),  # then a verdict
        ([o.TIMEOUT] * 3, [None, None, ("timeout", 3)]),
        ([o.CONNECT_FAILURE] * 3, [None, None, ("timeout", 3)]),
        ([F, o.TIMEOUT, E500], [None, None, ("5xx", 3)]),  # soft failures in a row, mixed
        ([F, F, OK, F, F], [None] * 5),  # a success starts over
        ([F, F, o.response(404), F, F], [None] * 5),  # any non-5xx answer
        ([F, F, o.REFUSED, F], [None, None, ("refused", 1), ("5xx", 3)]),  # hard: no reset
    ],
)
def test_what_is_published(outcomes: list[Outcome], expected: list[Any]) -> None:
    assert published(Publisher(CONFIG, "orders", "gw-1"), *outcomes) == expected


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([0.0, 9.9], [("refused", 1), None]),
        ([0.0, 10.0], [("refused", 1), ("refused", 1)]),
        ([0.0, 5.0, 12.0, 19.0, 20.0], [("refused", 1), None, ("refused", 1), None, None]),
    ],
)
def test_republish_interval(times: list[float], expected: list[Any]) -> None:
    publisher = Publisher(CONFIG, "orders", "gw-1")
    assert [published(publisher, o.REFUSED, now=t)[0] for t in times] == expected


def test_a_long_streak_is_published_again_after_the_interval() -> None:
    publisher = Publisher(CONFIG, "orders", "gw-1")
    assert published(publisher, F, F, F, F, F)[-1] == ("5xx", 5)
    assert published(publisher, F, F, now=5.0) == [None, None]
    assert published(publisher, F, now=10.0) == [("5xx", 8)]


def test_publisher_forget() -> None:
    publisher = Publisher(CONFIG, "orders", "gw-1")
    published(publisher, o.REFUSED, F, F)
    publisher.forget("i1")
    assert published(publisher, o.REFUSED, F, F, F) == [("refused", 1), None, None, ("5xx", 3)]


# --- Jury -----------------------------------------------------------------------------------


def court(percent: int = 50) -> tuple[Jury, Ejections]:
    return Jury(CONFIG), Ejections(OutlierConfig(max_ejected_percent=percent))


def hear(
    jury: Jury, ejections: Ejections, *evidence: Evidence, now: float = 0.0, total: int = 10
) -> list[Effect]:
    effects: list[Effect] = []
    for message in evidence:
        effects.extend(jury.receive(message, now, total, ejections))
    return effects


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ([ev("refused")], "evidence-refused"),  # one report suffices
        ([ev("reset")], "evidence-reset"),
        ([ev("5xx", streak=5)], "evidence-5xx"),  # a full streak from one observer
        ([ev("timeout", streak=9)], "evidence-timeout"),
        ([ev("5xx", streak=4)], None),  # a vote alone
        ([ev("5xx", streak=3), ev("5xx", streak=4)], None),  # the same voter twice
        ([ev("5xx", streak=3), ev("5xx", observer="b", streak=3)], "evidence-5xx"),
        ([ev("timeout", streak=3), ev("5xx", observer="b", streak=1)], "evidence-5xx"),
        ([ev("5xx", instance="i2", streak=3), ev("5xx", observer="b", streak=3)], None),
    ],
)
def test_verdicts(evidence: list[Evidence], reason: str | None) -> None:
    jury, ejections = court()
    effects = hear(jury, ejections, *evidence)
    assert effects == ([] if reason is None else [Ejected("i1", 30.0, reason)])


@pytest.mark.parametrize(("later", "ejected"), [(5.0, True), (10.0, True), (10.1, False)])
def test_votes_count_within_the_window(later: float, ejected: bool) -> None:
    jury, ejections = court()
    hear(jury, ejections, ev("5xx", streak=3), now=0.0)
    effects = hear(jury, ejections, ev("5xx", observer="b", streak=3), now=later)
    assert bool(effects) is ejected


def test_our_own_vote_counts() -> None:
    """NATS echoes our evidence back: our vote and one other are two observers."""
    jury, ejections = court()
    publisher = Publisher(CONFIG, "orders", "me")
    *_, vote = (publisher.should_publish("i1", o.TIMEOUT, 0.0) for _ in range(3))
    assert vote is not None
    assert hear(jury, ejections, vote) == []
    assert hear(jury, ejections, ev("timeout", observer="b", streak=3)) == [
        Ejected("i1", 30.0, "evidence-timeout")
    ]


def test_evidence_about_an_ejected_instance_changes_nothing() -> None:
    jury, ejections = court()
    ejections.observe("i1", o.REFUSED, 0.0, 10)
    assert hear(jury, ejections, ev("refused"), ev("5xx", observer="b", streak=9)) == []


@pytest.mark.parametrize(
    ("total", "limit"), [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (10, 3), (100, 33)]
)
def test_observer_limit(total: int, limit: int) -> None:
    assert Jury(CONFIG).limit(total) == limit


def test_one_observer_cannot_eject_more_than_its_share() -> None:
    jury, ejections = court(percent=100)
    effects = hear(jury, ejections, *(ev("refused", instance=f"i{n}") for n in range(5)))
    assert [type(e).__name__ for e in effects] == ["Ejected"] * 3 + ["Capped"] * 2
    assert effects[3] == Capped("i3", "evidence-refused", "observer-share")
    # Others still can, and after its ejections end the observer can again.
    assert hear(jury, ejections, ev("refused", instance="i3", observer="b")) != []
    effects = hear(jury, ejections, ev("refused", instance="i4"), now=30.0)
    assert effects[-1] == Ejected("i4", 60.0, "evidence-refused")


def test_corroborated_ejections_charge_no_observer() -> None:
    jury, ejections = court(percent=100)
    for n in range(3):
        votes = [ev("5xx", instance=f"i{n}", streak=3), ev("5xx", f"i{n}", "b", streak=3)]
        assert hear(jury, ejections, *votes) != []
    assert hear(jury, ejections, ev("refused", instance="i5")) != []


def test_the_service_cap_applies_to_evidence() -> None:
    jury, ejections = court(percent=50)
    effects = hear(
        jury,
        ejections,
        ev("refused", instance="i1", observer="a"),
        ev("refused", instance="i2", observer="b"),
        ev("refused", instance="i3", observer="c"),
        total=4,
    )
    assert effects[2] == Capped("i3", "evidence-refused", "max-ejected-percent")


def test_a_capped_ejection_does_not_charge_the_observer() -> None:
    jury, ejections = court(percent=50)
    hear(jury, ejections, ev("refused", instance="i1", observer="b"), total=2)
    assert hear(jury, ejections, ev("refused", instance="i2"), total=2) == [
        Capped("i2", "evidence-refused", "max-ejected-percent")
    ]
    assert hear(jury, ejections, ev("refused", instance="i2"), now=30.0, total=2) == [
        Restored("i1"),
        Ejected("i2", 60.0, "evidence-refused"),
    ]


def test_jury_forget() -> None:
    jury, ejections = court()
    hear(jury, ejections, ev("5xx", streak=3))
    jury.forget("i1")
    assert hear(jury, ejections, ev("5xx", observer="b", streak=3)) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"vote_streak": 0},
        {"vote_streak": 6},
        {"observers": 0},
        {"window": 0.0},
        {"republish": -1.0},
        {"observer_share": 1.5},
    ],
)
def test_config_rejects(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        EvidenceConfig(**fields)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------

OBSERVERS = ["a", "b", "c"]
INSTANCES = [f"i{n}" for n in range(9)]
SIGNALS: list[Signal] = ["refused", "reset", "timeout", "5xx"]

messages = st.lists(
    st.tuples(
        st.sampled_from(OBSERVERS),
        st.integers(0, len(INSTANCES) - 1),
        st.sampled_from(SIGNALS),
        st.integers(1, 6),
        st.sampled_from([0.0, 0.0, 1.0, 11.0, 31.0]),
    ),
    max_size=100,
)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, len(INSTANCES)), percent=st.integers(0, 100), messages=messages)
def test_caps_hold_for_any_evidence(
    total: int, percent: int, messages: list[tuple[str, int, Signal, int, float]]
) -> None:
    jury, ejections = Jury(CONFIG), Ejections(OutlierConfig(max_ejected_percent=percent))
    pool = INSTANCES[:total]
    word: dict[str, set[str]] = {o: set() for o in OBSERVERS}  # ejected on its word alone
    now = 0.0
    for observer, index, signal, streak, step in messages:
        now += step
        message = ev(signal, pool[index % total], observer, streak)
        effects = jury.receive(message, now, total, ejections)
        alone = signal in ("refused", "reset") or streak >= CONFIG.streak
        for effect in effects:
            if isinstance(effect, Ejected):
                for instances in word.values():
                    instances.discard(effect.instance)
                if alone:
                    word[observer].add(effect.instance)
        in_force = {i for i in pool if ejections.is_ejected(i, now)}
        assert len(in_force) * 100 <= percent * total
        for instances in word.values():
            assert len(instances & in_force) <= jury.limit(total)
