"""Whether watchers cover us, and the beat interval that follows: tables, and the lapse
timer of the shell on a manual clock."""

from __future__ import annotations

import asyncio

import pytest
from memory_bus import MemoryHub

from mesh import subjects
from mesh.membership.coverage import (
    COVER_EVERY,
    LAPSE,
    Cover,
    CoverageWatch,
    beat_interval,
    covered,
    heard,
)
from mesh.messages import Coverage, encode
from mesh.timing import PRESETS, Timing

LAN = PRESETS["lan"]  # 1 s beats, suspect after 3: a silence of 3 s
LOCAL = PRESETS["local"]  # 0.2 s beats: 0.6 s


def test_an_announcement_holds_for_lapse_of_its_intervals_and_never_longer_than_ours() -> None:
    fine = heard(Coverage(watcher="gw", closes_within=3.0, every=0.5), now=100.0)
    assert fine == Cover(until=100.0 + 0.5 * LAPSE, closes_within=3.0)
    forged = heard(Coverage(watcher="gw", closes_within=3.0, every=3600.0), now=100.0)
    assert forged.until == 100.0 + COVER_EVERY * LAPSE  # not three hours


@pytest.mark.parametrize(
    ("covers", "timing", "now", "expected", "why"),
    [
        ({}, LAN, 0.0, False, "no watcher heard"),
        ({"a": Cover(10.0, 3.0)}, LAN, 9.9, True, "servers close within our suspicion time"),
        ({"a": Cover(10.0, 3.0)}, LAN, 10.0, False, "the watcher went quiet: lapsed"),
        ({"a": Cover(10.0, 3.1)}, LAN, 5.0, False, "servers slower than our suspicion: no"),
        ({"a": Cover(10.0, 3.0)}, LOCAL, 5.0, False, "a fast preset finds silence sooner itself"),
        ({"a": Cover(10.0, 480.0)}, LAN, 5.0, False, "NATS's default pings: minutes"),
        ({"a": Cover(10.0, 30.0)}, Timing(10.0, 3, 6, 60.0), 5.0, True, "a slow preset"),
        (
            {"a": Cover(10.0, 3.0), "b": Cover(10.0, 4.0)},
            LAN, 5.0, False, "watchers that disagree count as the slowest",
        ),
        (
            {"a": Cover(10.0, 3.0), "b": Cover(4.0, 4.0)},
            LAN, 5.0, True, "a lapsed watcher's word counts no more",
        ),
    ],
)  # fmt: skip
def test_covered(
    covers: dict[str, Cover], timing: Timing, now: float, expected: bool, why: str
) -> None:
    assert covered(covers, timing, now) is expected, why


@pytest.mark.parametrize(
    ("covers", "slow", "expected", "why"),
    [
        ({"a": Cover(10.0, 3.0)}, 30.0, 30.0, "covered: slow"),
        ({}, 30.0, 1.0, "uncovered: the timing's own interval"),
        ({"a": Cover(10.0, 3.0)}, 0.0, 1.0, "slow beats turned off"),
        ({"a": Cover(10.0, 3.0)}, 0.5, 1.0, "never faster than the timing's interval"),
    ],
)
def test_beat_interval(covers: dict[str, Cover], slow: float, expected: float, why: str) -> None:
    assert beat_interval(covers, LAN, slow, now=5.0) == expected, why


class Lagging:
    """A clock 2 ms behind the loop's: every timer the watch sets fires, by its clock,
    just before the deadline, as uvloop's millisecond ticks can make it."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time() - 0.002

    def wall(self) -> float:
        return self.monotonic()


async def test_a_lapse_timer_that_fires_early_is_armed_again() -> None:
    hub = MemoryHub()
    watch = CoverageWatch(hub.bus(), LAN, count_invalid=lambda _: None, clock=Lagging())
    changes: list[bool] = []
    watch.on_change(changes.append)
    await watch.start()
    word = Coverage(watcher="gw", closes_within=3.0, every=0.01)  # holds 0.03 s
    await hub.bus().publish(subjects.COVERAGE, encode(word))
    assert changes == [True]
    await asyncio.sleep(0.2)
    assert changes == [True, False]  # not "still covered" for good
    watch.stop()
