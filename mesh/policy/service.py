"""Service documents: how callers balance, time out, retry, eject and admit for one service."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mesh.policy.fields import Duration, PolicyName, Token

Algorithm = Literal[
    "random", "round_robin", "least_request", "least_response_time", "consistent_hash"
]
RetryOn = (
    Literal["connect-failure", "refused", "reset", "timeout", "5xx", "gateway-error"]
    | Annotated[int, msgspec.Meta(ge=500, le=599)]
)
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Streak = Annotated[int, msgspec.Meta(ge=0, le=1000)]  # 0 turns that detector off


class HashOn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `consistent_hash` hashes: exactly one of a header, a cookie or the client address."""

    header: Token | None = None
    cookie: Token | None = None
    client_address: bool = False

    def __post_init__(self) -> None:
        if (self.header is not None) + (self.cookie is not None) + self.client_address != 1:
            raise ValueError("give exactly one of header, cookie or client_address: true")


class Balance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a caller picks an instance (DESIGN §5); `hash` is for `consistent_hash` only."""

    algorithm: Algorithm = "least_request"
    hash: HashOn | None = None  # consistent_hash without it hashes the client address
    zone_aware: bool = False
    slow_start: Duration | None = None  # ramp a new instance's share up over this long
    panic_threshold: Fraction = 0.5  # below this healthy share, balance over every instance
    ewma_decay: Duration = Duration(10.0)
    default_rtt: Duration = Duration(0.030)

    def __post_init__(self) -> None:
        if self.hash is not None and self.algorithm != "consistent_hash":
            raise ValueError("hash: only used with algorithm consistent_hash")


class Timeouts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`request` bounds the whole exchange, retries included; `per_try` one attempt."""

    connect: Duration = Duration(1.0)
    request: Duration = Duration(15.0)
    per_try: Duration | None = None

    def __post_init__(self) -> None:
        if self.per_try is not None and self.per_try > self.request:
            raise ValueError("per_try: must not exceed request")


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Full-jitter exponential backoff between attempts."""

    base: Duration = Duration(0.025)
    cap: Duration = Duration(0.250)

    def __post_init__(self) -> None:
        if self.cap < self.base:
            raise ValueError("cap: must not be below base")


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries may add at most `ratio` of the requests, but `min_per_second` are always allowed."""

    ratio: Fraction = 0.2
    min_per_second: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 10.0


class Retries(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`attempts` retries after the first try, each on another instance, when `on` holds."""

    attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    # DESIGN §10 plus reset: idempotent requests cut before any answer go elsewhere.
    on: Annotated[tuple[RetryOn, ...], msgspec.Meta(max_length=16)] = (
        "connect-failure",
        "refused",
        "reset",
        503,
    )

    backoff: Backoff = Backoff()
    budget: Budget = Budget()


class Outlier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ejection after failure streaks, for `base_ejection` times the ejection count."""

    consecutive_5xx: Streak = 5
    consecutive_gateway_errors: Streak = 5
    base_ejection: Duration = Duration(30.0)
    max_ejection: Duration = Duration(300.0)
    max_ejected_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50

    def __post_init__(self) -> None:
        if self.max_ejection < self.base_ejection:
            raise ValueError("max_ejection: must not be below base_ejection")


class Concurrency(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Requests in flight to the service from one caller, beyond which it answers 503 (UO)."""

    max_requests: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1024


class Access(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only these services may call this one (checked by the callee's agent)."""

    allow_from: Annotated[tuple[PolicyName, ...], msgspec.Meta(max_length=256)] = ()


class Service(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="Service",
    tag_field="kind",
):
    """Policy for calls to one service; every section defaults to DESIGN §10."""

    name: PolicyName
    balance: Balance = Balance()
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    outlier: Outlier = Outlier()
    concurrency: Concurrency = Concurrency()
    access: Access | None = None  # None: any caller
