"""Whether a failed attempt is tried again: retry conditions, retry count and idempotency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mesh.resilience.outcome import Kind, Outcome

# The one list of named retry conditions (settings, Service documents and decide use it);
# a bare status code is a condition too.
Named = Literal["connect-failure", "refused", "reset", "timeout", "5xx", "gateway-error"]
Condition = Named | int

_NO_ANSWER = frozenset({Kind.CONNECT_FAILURE, Kind.REFUSED, Kind.RESET, Kind.TIMEOUT})
# What each named condition covers, as in Envoy's x-envoy-retry-on: "reset", "5xx" and
# "gateway-error" include every attempt that got no answer at all. A bare status code
# in `on` is one of Envoy's retriable_status_codes.
_COVERS: dict[Named, frozenset[Kind | int]] = {
    "connect-failure": frozenset({Kind.CONNECT_FAILURE, Kind.REFUSED}),
    "refused": frozenset({Kind.REFUSED}),
    "reset": _NO_ANSWER,
    "timeout": frozenset({Kind.TIMEOUT}),
    "5xx": _NO_ANSWER | frozenset(range(500, 600)),
    "gateway-error": _NO_ANSWER | frozenset({502, 503, 504}),
}

# RFC 9110 §9.2.2. Methods are case-sensitive, so an unknown spelling is not idempotent.
# Both spellings: the engine's parser hands out bytes.
_IDEMPOTENT_NAMES = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
IDEMPOTENT: frozenset[str | bytes] = frozenset(
    [*_IDEMPOTENT_NAMES, *(name.encode() for name in _IDEMPOTENT_NAMES)]
)


# What is retried by default, in the order settings show it. Connection failures and a
# 503 (overloaded or draining) are safe everywhere; reset also resends an idempotent
# request cut before any answer (an instance killed mid-request). Other 5xx are left out:
# an error the service means (a 500 from a bug) comes back from every instance alike,
# and retrying it only multiplies the load.
RETRY_ON: tuple[Condition, ...] = ("connect-failure", "refused", "reset", 503)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one service's requests are retried: every retry knob and its default.

    `attempts` counts retries after the first try (Envoy's num_retries): 2 means at most
    3 tries in all, and 0 turns retries off. Backoff is full jitter (backoff.delay).
    """

    # Each retry goes to another instance: more retries hide more failures but add load
    # when a whole service is sick (the retry budget bounds that).
    attempts: int = 2
    on: frozenset[Condition] = frozenset(RETRY_ON)
    # A per-try timeout gives up on a hung instance early enough to try another, but
    # cuts off slow answers that would have come; None lets a try use the whole deadline.
    per_try_timeout: float | None = None
    # Backoff spreads the retries of callers that failed together; longer waits spare a
    # struggling service but add latency to every retried request.
    backoff_base: float = 0.025
    backoff_cap: float = 0.250
    # `on` expanded once into outcome kinds and statuses, so `decide` is one set lookup.
    retriable: frozenset[Kind | int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError("attempts: must not be negative")
        if self.per_try_timeout is not None and self.per_try_timeout <= 0:
            raise ValueError("per_try_timeout: must be above 0")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError("backoff: need 0 < base <= cap")
        keys: set[Kind | int] = set()
        for condition in self.on:
            if isinstance(condition, str) and condition in _COVERS:
                keys |= _COVERS[condition]
            elif type(condition) is int and 100 <= condition <= 599:
                keys.add(condition)
            else:
                raise ValueError(f"on: unknown retry condition {condition!r}")
        object.__setattr__(self, "retriable", frozenset(keys))


def decide(policy: RetryPolicy, outcome: Outcome, retries_done: int, method: str | bytes) -> bool:
    """May the request be tried again, on another instance, after `outcome`?

    `retries_done` counts the retries already made (0 after the first try). The retry
    budget and the deadline are the caller's next checks, after this says yes.
    """
    if retries_done >= policy.attempts:
        return False
    key = outcome.status if outcome.kind is Kind.RESPONSE else outcome.kind
    if key not in policy.retriable:
        return False
    # A request that may have reached the upstream may have taken effect there: only an
    # idempotent one can be sent twice without the risk of doing it twice.
    return not outcome.sent or method in IDEMPOTENT
