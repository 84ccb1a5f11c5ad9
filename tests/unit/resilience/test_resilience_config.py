"""mesh.resilience.config: DESIGN §10 defaults, in step with the policy model's."""

from __future__ import annotations

import pytest

from mesh.policy.service import Service
from mesh.resilience.budget import BudgetConfig
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.outlier import OutlierConfig
from mesh.resilience.retry import RetryPolicy


def test_design_defaults() -> None:
    config = ResilienceConfig()
    assert config.retry == RetryPolicy(
        attempts=2, on=frozenset({"connect-failure", "refused", "reset", 503}), backoff_base=0.025
    )
    assert config.retry.backoff_cap == 0.25
    assert config.budget == BudgetConfig(ratio=0.2, min_per_second=10.0)
    assert config.outlier == OutlierConfig(
        consecutive_5xx=5,
        consecutive_gateway_errors=5,
        base_ejection=30.0,
        max_ejection=300.0,
        max_ejected_percent=50,
    )
    assert (config.max_requests, config.connect_timeout, config.request_timeout) == (
        1024,
        1.0,
        15.0,
    )
    assert (config.evidence.streak, config.evidence.observers, config.evidence.window) == (
        5,
        2,
        10.0,
    )


def test_defaults_match_a_default_service_policy() -> None:
    """The mapping ResilienceConfig documents, applied to a Service with every default."""
    svc = Service(name="orders")
    retries, outlier = svc.retries, svc.outlier
    config = ResilienceConfig(
        retry=RetryPolicy(
            attempts=retries.attempts,
            on=frozenset(retries.on),
            per_try_timeout=svc.timeouts.per_try,
            backoff_base=retries.backoff.base,
            backoff_cap=retries.backoff.cap,
        ),
        budget=BudgetConfig(
            ratio=retries.budget.ratio, min_per_second=retries.budget.min_per_second
        ),
        outlier=OutlierConfig(
            consecutive_5xx=outlier.consecutive_5xx,
            consecutive_gateway_errors=outlier.consecutive_gateway_errors,
            base_ejection=outlier.base_ejection,
            max_ejection=outlier.max_ejection,
            max_ejected_percent=outlier.max_ejected_percent,
        ),
        max_requests=svc.concurrency.max_requests,
        connect_timeout=svc.timeouts.connect,
        request_timeout=svc.timeouts.request,
    )
    assert config == ResilienceConfig()


@pytest.mark.parametrize(
    "fields", [{"max_requests": 0}, {"connect_timeout": 0.0}, {"request_timeout": -1.0}]
)
def test_rejects(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"max_requests|timeouts"):
        ResilienceConfig(**fields)  # type: ignore[arg-type]
