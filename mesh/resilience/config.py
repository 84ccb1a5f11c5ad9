"""Every resilience knob of one service and its default, for settings and Service documents."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.resilience.budget import BudgetConfig
from mesh.resilience.evidence import EvidenceConfig
from mesh.resilience.outlier import OutlierConfig
from mesh.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """How callers of one service retry, eject, admit and time out.

    From a policy `Service`: retries -> retry (timeouts.per_try -> retry.per_try_timeout,
    `on` as a frozenset), retries.budget -> budget, outlier -> outlier,
    concurrency.max_requests -> max_requests, timeouts.connect/request -> the timeouts.
    `evidence` has no policy section yet: mesh-wide, its defaults hold.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    # Requests in flight from one caller: beyond it the caller answers 503 UO at once
    # rather than queue on a service that is not keeping up. Too low refuses bursts a
    # healthy service would take.
    max_requests: int = 1024
    # A short connect timeout fails over sooner; too short fails on a busy but healthy host.
    connect_timeout: float = 1.0
    # The whole exchange, retries and backoff included: longer serves slow requests,
    # shorter frees the client (and the caller's slot) sooner when a service hangs.
    request_timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests: at least 1")
        if self.connect_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("timeouts must be above 0")
