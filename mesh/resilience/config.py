"""Every resilience knob of one service, with DESIGN §10 defaults, for a Service policy to fill."""

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
    max_requests: int = 1024
    connect_timeout: float = 1.0
    request_timeout: float = 15.0  # the whole exchange, retries and backoff included

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests: at least 1")
        if self.connect_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("timeouts must be above 0")
