"""mesh.timing: presets and the expiry formulas, as tables."""

from __future__ import annotations

import pytest

from mesh.timing import (
    MAX_INTERVAL,
    MIN_INTERVAL,
    PRESETS,
    Timing,
    clamp_interval,
    down_at,
    forget_at,
    suspect_at,
)

LAN = PRESETS["lan"]
T = Timing(interval=1.0, suspect_intervals=2, down_intervals=5, forget_after=10.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lan", Timing(1.0, 3, 6, 60.0)),
        ("wan", Timing(5.0, 3, 6, 300.0)),
        ("local", Timing(0.2, 3, 6, 30.0)),
    ],
)
def test_presets(name: str, expected: Timing) -> None:
    assert PRESETS[name] == expected


def test_preset_names() -> None:
    assert set(PRESETS) == {"lan", "wan", "local"}


@pytest.mark.parametrize("timing", PRESETS.values(), ids=list(PRESETS))
def test_every_preset_goes_down_after_suspect_and_forgets_later(timing: Timing) -> None:
    assert 0 < timing.suspect_intervals < timing.down_intervals
    assert timing.forget_after > timing.interval * timing.down_intervals
    assert MIN_INTERVAL <= timing.interval <= MAX_INTERVAL


def test_lan_is_suspect_at_3s_and_down_at_6s() -> None:
    assert suspect_at(0.0, LAN.interval, LAN) == 3.0
    assert down_at(0.0, LAN.interval, LAN) == 6.0


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (0.0, MIN_INTERVAL),
        (-1.0, MIN_INTERVAL),
        (0.01, MIN_INTERVAL),
        (MIN_INTERVAL, MIN_INTERVAL),
        (0.2, 0.2),
        (1.0, 1.0),
        (MAX_INTERVAL, MAX_INTERVAL),
        (61.0, MAX_INTERVAL),
        (3600.0, MAX_INTERVAL),
    ],
)
def test_clamp_interval(interval: float, expected: float) -> None:
    assert clamp_interval(interval) == expected


@pytest.mark.parametrize(
    ("heard", "interval", "suspect", "down"),
    [
        # silence is measured in the SENDER's interval, not the observer's
        (0.0, 1.0, 2.0, 5.0),
        (100.0, 1.0, 102.0, 105.0),
        (10.0, 0.5, 11.0, 12.5),
        (10.0, 5.0, 20.0, 35.0),
        (0.0, 0.001, 0.1, 0.25),  # clamped up to MIN_INTERVAL
        (0.0, 3600.0, 120.0, 300.0),  # clamped down to MAX_INTERVAL
    ],
)
def test_suspect_and_down_at(heard: float, interval: float, suspect: float, down: float) -> None:
    assert suspect_at(heard, interval, T) == pytest.approx(suspect)
    assert down_at(heard, interval, T) == pytest.approx(down)
    assert suspect_at(heard, interval, T) < down_at(heard, interval, T)


@pytest.mark.parametrize(
    ("since", "timing", "expected"),
    [
        (0.0, T, 10.0),
        (6.0, LAN, 66.0),
        (6.0, PRESETS["wan"], 306.0),
        (1.2, PRESETS["local"], 31.2),
    ],
)
def test_forget_at(since: float, timing: Timing, expected: float) -> None:
    assert forget_at(since, timing) == pytest.approx(expected)


def test_the_observers_own_interval_does_not_change_when_a_sender_expires() -> None:
    """Mixed presets agree: a lan and a local observer expire a 1 s sender at the same time."""
    local = PRESETS["local"]
    assert suspect_at(0.0, 1.0, LAN) == suspect_at(0.0, 1.0, local)
    assert down_at(0.0, 1.0, LAN) == down_at(0.0, 1.0, local)
