"""Token buckets per route and key (client address, a header): pure, `now` passed in."""

from __future__ import annotations

from collections import OrderedDict

# Keys come from clients; a bound on how many are tracked keeps a flood of distinct keys
# from growing memory. The least recently seen key is forgotten first (it refills fully).
MAX_KEYS = 10_000


class TokenBuckets:
    """`rate` tokens per second, at most `burst` saved, per key."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, key: bytes, now: float) -> bool:
        """Take one token for `key` if there is one."""
        state = self._buckets.get(key)
        if state is None:
            tokens = self.burst
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
        else:
            tokens, at = state
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            self._buckets.move_to_end(key)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def retry_after(self, key: bytes, now: float) -> float:
        """Seconds until `key` has a token again (0 if it has one now)."""
        state = self._buckets.get(key)
        if state is None:
            return 0.0
        tokens, at = state
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
