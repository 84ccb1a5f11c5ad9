"""mesh.resilience.config: the defaults every setting and Service document starts from."""

from __future__ import annotations

import pytest

from mesh.resilience.budget import BudgetConfig
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.outlier import OutlierConfig
from mesh.resilience.retry import RetryPolicy


def test_the_defaults_the_readme_documents() -> None:
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


@pytest.mark.parametrize(
    "fields", [{"max_requests": 0}, {"connect_timeout": 0.0}, {"request_timeout": -1.0}]
)
def test_rejects(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"max_requests|timeouts"):
        ResilienceConfig(**fields)  # type: ignore[arg-type]
