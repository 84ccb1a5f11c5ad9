"""Admission and time limits: a per-service concurrency limit, deadlines and per-try timeouts."""

from __future__ import annotations


class ConcurrencyLimit:
    """Requests in flight from one caller to one service; past `limit` the caller answers 503 UO.

    `limit` may be changed in place when a new policy revision arrives: the requests in
    flight stay counted.
    """

    __slots__ = ("active", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit: at least 1")
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        # A stray second release must not leave a slot granted for good.
        if self.active > 0:
            self.active -= 1


def remaining(deadline: float, now: float) -> float:
    """Seconds left before `deadline` (an absolute time on the caller's clock), never below 0."""
    left = deadline - now
    return left if left > 0.0 else 0.0


def try_timeout(per_try: float | None, deadline: float, now: float) -> float:
    """How long the next try may take: its own timeout, but never past the request's deadline.

    0 means no time is left: fail with UT rather than start a try.
    """
    left = remaining(deadline, now)
    return left if per_try is None or per_try > left else per_try
