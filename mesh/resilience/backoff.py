"""Full-jitter exponential backoff between retries (AWS "Exponential Backoff and Jitter")."""

from __future__ import annotations

import random

# Past 2**64 the ceiling is the cap for any sane base; the bound keeps the float finite.
_MAX_EXPONENT = 64


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest wait before retry number `attempt` (0 for the first retry)."""
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt`: uniform in [0, min(cap, base * 2**attempt)].

    Full jitter spreads the retries of many callers that failed together, so they do not
    hit the next instance in lockstep.
    """
    return rng.uniform(0.0, ceiling(attempt, base, cap))
