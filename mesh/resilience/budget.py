"""Retry budget (Linkerd's): retries may add a share of the requests, plus a small floor."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Over the last `window` seconds, retries <= ratio * requests + min_per_second * window.

    As Linkerd's (and tower's TpsBudget), the floor is a reserve over the window, not a
    per-second quota: a quiet caller may spend it in one burst after an outage. That is
    what lets a caller with little traffic retry at all.
    """

    # A higher ratio lets retries hide more failures, and adds that much load when the
    # whole service is failing (a retry storm); 0.2 caps it at a fifth more requests.
    ratio: float = 0.2
    # The floor lets a quiet caller retry at all; a high one lets many quiet callers
    # together flood a sick service.
    min_per_second: float = 10.0
    window: int = 10  # seconds; one bucket per second

    def __post_init__(self) -> None:
        if self.ratio < 0 or self.min_per_second < 0:
            raise ValueError("ratio and min_per_second must not be negative")
        if self.window < 1:
            raise ValueError("window: at least 1 second")


class RetryBudget:
    """The budget of one service on one caller: O(1) per call, one bucket per second.

    The window is the current second and the `window - 1` before it, so a bucket leaves
    the window whole. Requests and retries share buckets and leave together. `now` must
    not go backwards; an earlier `now` is counted in the newest bucket.
    """

    __slots__ = (
        "_head",
        "_head_end",
        "_head_index",
        "_ratio",
        "_requests",
        "_reserve",
        "_retries",
        "_total_req",
        "_total_ret",
    )

    def __init__(self, config: BudgetConfig) -> None:
        self._ratio = config.ratio
        self._reserve = config.min_per_second * config.window
        self._requests = [0] * config.window
        self._retries = [0] * config.window
        self._total_req = 0
        self._total_ret = 0
        self._head: int | None = None  # the whole second the newest bucket counts
        self._head_end = -math.inf  # until then, `now` falls in the newest bucket
        self._head_index = 0

    def _bucket(self, now: float) -> int:
        """The index of the bucket for `now`, emptying the buckets that left the window."""
        second = math.floor(now)
        head = self._head
        size = len(self._requests)
        if head is not None and second <= head:
            return head % size
        if head is None or second - head >= size:
            self._requests[:] = [0] * size
            self._retries[:] = [0] * size
            self._total_req = self._total_ret = 0
        else:
            for passed in range(head + 1, second + 1):
                i = passed % size
                self._total_req -= self._requests[i]
                self._total_ret -= self._retries[i]
                self._requests[i] = self._retries[i] = 0
        self._head = second
        self._head_end = second + 1
        self._head_index = second % size
        return self._head_index

    def record_request(self, now: float) -> None:
        """Count one request from a client (its first try; retries are not requests)."""
        i = self._head_index if now < self._head_end else self._bucket(now)
        self._requests[i] += 1
        self._total_req += 1

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget if it has room; False means do not retry."""
        i = self._bucket(now)
        if self._total_ret + 1 > self._ratio * self._total_req + self._reserve:
            return False
        self._retries[i] += 1
        self._total_ret += 1
        return True
