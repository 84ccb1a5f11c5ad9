"""Whether a watcher covers us, and the beat interval that follows: a table."""

from __future__ import annotations

import pytest

from mesh.membership.coverage import LAPSE, Cover, beat_interval, covered, heard
from mesh.messages import Coverage
from mesh.timing import PRESETS, Timing

LAN = PRESETS["lan"]  # 1 s beats, suspect after 3: a silence of 3 s
LOCAL = PRESETS["local"]  # 0.2 s beats: 0.6 s


def test_an_announcement_holds_for_lapse_of_its_intervals() -> None:
    cover = heard(Coverage(watcher="gw", closes_within=3.0, every=1.0), now=100.0)
    assert cover == Cover(until=100.0 + LAPSE, closes_within=3.0)


@pytest.mark.parametrize(
    ("cover", "timing", "now", "expected", "why"),
    [
        (None, LAN, 0.0, False, "no watcher heard"),
        (Cover(10.0, 3.0), LAN, 9.9, True, "servers close within our own suspicion time"),
        (Cover(10.0, 3.0), LAN, 10.0, False, "the watcher went quiet: lapsed"),
        (Cover(10.0, 3.1), LAN, 5.0, False, "servers slower than our suspicion: no"),
        (Cover(10.0, 3.0), LOCAL, 5.0, False, "a fast preset finds silence sooner itself"),
        (Cover(10.0, 360.0), LAN, 5.0, False, "NATS's default pings: minutes"),
        (Cover(10.0, 30.0), Timing(10.0, 3, 6, 60.0), 5.0, True, "a slow preset is covered"),
    ],
)
def test_covered(cover: Cover | None, timing: Timing, now: float, expected: bool, why: str) -> None:
    assert covered(cover, timing, now) is expected, why


@pytest.mark.parametrize(
    ("cover", "slow", "expected", "why"),
    [
        (Cover(10.0, 3.0), 30.0, 30.0, "covered: slow"),
        (None, 30.0, 1.0, "uncovered: the timing's own interval"),
        (Cover(10.0, 3.0), 0.0, 1.0, "slow beats turned off"),
        (Cover(10.0, 3.0), 0.5, 1.0, "never faster than the timing's interval"),
    ],
)
def test_beat_interval(cover: Cover | None, slow: float, expected: float, why: str) -> None:
    assert beat_interval(cover, LAN, slow, now=5.0) == expected, why
