"""The settings-made Service policy, for every service that has no Service document."""

from __future__ import annotations

from typing import Any

from mesh.config import Settings
from mesh.errors import ConfigError
from mesh.policy.compile import Compiled, compile_revision
from mesh.policy.decode import parse
from mesh.policy.problem import Problem
from mesh.policy.service import Service


def _retry_on(text: str) -> list[Any]:
    return [int(c) if c.strip().isdigit() else c.strip() for c in text.split(",") if c.strip()]


def default_service(settings: Settings) -> Service:
    """MESH_* settings as a Service document, validated exactly like one from a file."""
    raw = {
        "kind": "Service",
        "name": "default",
        "balance": {
            "algorithm": settings.balance_algorithm,
            "zone_aware": settings.zone_aware,
            "panic_threshold": settings.panic_threshold,
            "slow_start": settings.slow_start or None,
        },
        "timeouts": {
            "connect": settings.connect_timeout,
            "request": settings.request_timeout,
            "per_try": settings.per_try_timeout,
        },
        "retries": {"attempts": settings.retry_attempts, "on": _retry_on(settings.retry_on)},
        "outlier": {
            "consecutive_5xx": settings.outlier_consecutive_5xx,
            "consecutive_gateway_errors": settings.outlier_consecutive_gateway_errors,
            "base_ejection": settings.outlier_base_ejection,
            "max_ejection": max(settings.outlier_max_ejection, settings.outlier_base_ejection),
            "max_ejected_percent": settings.max_ejected_percent,
        },
        "concurrency": {"max_requests": settings.max_requests},
    }
    document = parse(raw, file="MESH_* settings", doc_index=None)
    if isinstance(document, Problem):
        raise ConfigError(str(document))
    assert isinstance(document, Service)
    return document


def default_compiled(settings: Settings, *, zone: str = "") -> Compiled:
    """The compiled revision a node starts with, before any policy arrives."""
    return compile_revision({}, default=default_service(settings), zone=zone or settings.zone)
