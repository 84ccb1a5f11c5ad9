"""A clock that moves only when the test moves it, for the shells' injected clocks."""

from __future__ import annotations

EPOCH = 1_700_000_000.0  # the wall clock reads this plus the monotonic reading


class ManualClock:
    """monotonic() and wall() (mesh.clock.Clock); calling it reads monotonic, for the
    shells that take a bare `Callable[[], float]`."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    def __call__(self) -> float:
        return self.now
