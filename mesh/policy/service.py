"""Service documents: how callers balance, time out, retry, eject and admit for one service."""

from __future__ import annotations

from typing import Annotated

import msgspec

from mesh.balance.config import Algorithm
from mesh.policy.access import Access
from mesh.policy.fields import Duration, PolicyName, Token
from mesh.resilience.retry import Named

RetryOn = Named | Annotated[int, msgspec.Meta(ge=500, le=599)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Streak = Annotated[int, msgspec.Meta(ge=0, le=1000)]  # 0 turns that detector off

# No field here has a default: a node fills what a document leaves out from its own
# MESH_* settings (mesh.forwarding.defaults), whose defaults are the runtime objects'.


class HashOn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `consistent_hash` hashes: exactly one of a header, a cookie or the client address."""

    header: Token | None = None
    cookie: Token | None = None
    client_address: bool = False

    def __post_init__(self) -> None:
        if (self.header is not None) + (self.cookie is not None) + self.client_address != 1:
            raise ValueError("give exactly one of header, cookie or client_address: true")


class Balance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a caller picks an instance (mesh.balance.config); `hash` is for `consistent_hash`."""

    algorithm: Algorithm
    hash: HashOn | None  # consistent_hash without it hashes the client address
    zone_aware: bool
    slow_start: Duration | None  # ramp a new instance's share up over this long
    panic_threshold: Fraction  # below this healthy share, balance over every instance
    ewma_decay: Duration
    default_rtt: Duration

    def __post_init__(self) -> None:
        if self.hash is not None and self.algorithm != "consistent_hash":
            raise ValueError("hash: only used with algorithm consistent_hash")


class Timeouts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`request` bounds the whole exchange, retries included; `per_try` one attempt."""

    connect: Duration
    request: Duration
    per_try: Duration | None

    def __post_init__(self) -> None:
        if self.per_try is not None and self.per_try > self.request:
            raise ValueError("per_try: must not exceed request")


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Full-jitter exponential backoff between attempts."""

    base: Duration
    cap: Duration

    def __post_init__(self) -> None:
        if self.cap < self.base:
            raise ValueError("cap: must not be below base")


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries may add at most `ratio` of the requests, but `min_per_second` are always allowed."""

    ratio: Fraction
    min_per_second: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class Retries(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`attempts` retries after the first try, each on another instance, when `on` holds."""

    attempts: Annotated[int, msgspec.Meta(ge=0, le=10)]
    on: Annotated[tuple[RetryOn, ...], msgspec.Meta(max_length=16)]
    backoff: Backoff
    budget: Budget


class Outlier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ejection after failure streaks, for `base_ejection` times the ejection count."""

    consecutive_5xx: Streak
    consecutive_gateway_errors: Streak
    base_ejection: Duration
    max_ejection: Duration
    max_ejected_percent: Annotated[int, msgspec.Meta(ge=0, le=100)]

    def __post_init__(self) -> None:
        if self.max_ejection < self.base_ejection:
            raise ValueError("max_ejection: must not be below base_ejection")


class Concurrency(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Requests in flight to the service from one caller, beyond which it answers 503 (UO)."""

    max_requests: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Service(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="Service",
    tag_field="kind",
):
    """Policy for calls to one service; a document gives some fields, a node's settings the rest."""

    name: PolicyName
    balance: Balance
    timeouts: Timeouts
    retries: Retries
    outlier: Outlier
    concurrency: Concurrency
    # Only some services may call this one: the callee's agents check the caller's
    # certificate (mesh.policy.access). None: anyone may call.
    access: Access | None = None
    # Services this one calls that its own nodes follow from the start, for as long as
    # the document names them (others are followed on their first call). A name that is
    # no service yet is followed all the same: it may appear later.
    preload: Annotated[tuple[PolicyName, ...], msgspec.Meta(max_length=64)] = ()
