"""A node's settings-made Service: what every Service document leaves out, and the default."""

from __future__ import annotations

from typing import Any

from mesh.balance.config import BalanceConfig
from mesh.config import Settings, service_fields
from mesh.errors import ConfigError
from mesh.policy.decode import parse
from mesh.policy.problem import Problem
from mesh.policy.service import Service
from mesh.resilience.config import ResilienceConfig

SOURCE = "MESH_* settings"


def _unset_by_settings() -> dict[str, Any]:
    """The Service fields no setting fills, at the runtime objects' defaults."""
    balance, resilience = BalanceConfig(), ResilienceConfig()
    retry, budget = resilience.retry, resilience.budget
    return {
        "balance": {
            "hash": None,
            "ewma_decay": balance.ewma_decay,
            "default_rtt": balance.default_rtt,
        },
        "retries": {
            "backoff": {"base": retry.backoff_base, "cap": retry.backoff_cap},
            "budget": {"ratio": budget.ratio, "min_per_second": budget.min_per_second},
        },
    }


def default_service(settings: Settings) -> Service:
    """MESH_* settings as a whole Service document, validated exactly like one from a file.

    It serves services without a Service document, and fills in every field that a
    document leaves out (mesh.policy.decode.parse).
    """
    raw: dict[str, Any] = {"kind": "Service", "name": "default", **_unset_by_settings()}
    for path, value in settings.service_values().items():
        *sections, name = path.split(".")
        section = raw
        for part in sections:
            section = section.setdefault(part, {})
        section[name] = value
    document = parse(raw, None, file=SOURCE, doc_index=None)
    if isinstance(document, Problem):
        raise ConfigError(_named(document, settings))
    assert isinstance(document, Service)
    return document


def _named(problem: Problem, settings: Settings) -> str:
    """The problem, said about the MESH_ variable the user set rather than a document path."""
    for name, path in service_fields().items():
        if problem.path == path or problem.path.startswith(f"{path}["):
            return f"MESH_{name.upper()}={getattr(settings, name)}: {problem.message}"
    return str(problem)
