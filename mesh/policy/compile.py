"""A policy revision compiled for the forwarding path: route table and per-service policies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.balance.config import BalanceConfig
from mesh.balance.keys import HashSource
from mesh.policy.match import RouteTable
from mesh.policy.model import Document
from mesh.policy.route import Route
from mesh.policy.service import Balance, Service
from mesh.resilience.budget import BudgetConfig
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.outlier import OutlierConfig
from mesh.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """How this node calls one service."""

    balance: BalanceConfig = field(default_factory=BalanceConfig)
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    # Callers this service's own agents admit (checked on their inbound listener); None: all.
    allow_from: frozenset[str] | None = None
    # Services this service's own nodes follow whether or not they call them yet.
    preload: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Compiled:
    routes: RouteTable | None  # None: no Route documents, default routes only
    services: Mapping[str, ServicePolicy]
    default: ServicePolicy  # for services without a Service document

    def policy(self, service: str) -> ServicePolicy:
        return self.services.get(service, self.default)


def _hash_source(balance: Balance) -> HashSource:
    on = balance.hash
    if on is None or on.client_address:
        return HashSource()
    if on.header is not None:
        return HashSource("header", on.header)
    return HashSource("cookie", on.cookie or "")


def service_policy(document: Service, *, zone: str) -> ServicePolicy:
    """One Service document as the engine's configuration objects."""
    b, t, r, o = document.balance, document.timeouts, document.retries, document.outlier
    return ServicePolicy(
        balance=BalanceConfig(
            algorithm=b.algorithm,
            hash_on=_hash_source(b),
            zone=zone if b.zone_aware else "",
            slow_start_window=b.slow_start or 0.0,
            panic_threshold=b.panic_threshold,
            ewma_decay=b.ewma_decay,
            default_rtt=b.default_rtt,
        ),
        resilience=ResilienceConfig(
            retry=RetryPolicy(
                attempts=r.attempts,
                on=frozenset(r.on),
                per_try_timeout=t.per_try,
                backoff_base=r.backoff.base,
                backoff_cap=r.backoff.cap,
            ),
            budget=BudgetConfig(ratio=r.budget.ratio, min_per_second=r.budget.min_per_second),
            outlier=OutlierConfig(
                consecutive_5xx=o.consecutive_5xx,
                consecutive_gateway_errors=o.consecutive_gateway_errors,
                base_ejection=o.base_ejection,
                max_ejection=o.max_ejection,
                max_ejected_percent=o.max_ejected_percent,
            ),
            max_requests=document.concurrency.max_requests,
            connect_timeout=t.connect,
            request_timeout=t.request,
        ),
        allow_from=None if document.access is None else frozenset(document.access.allow_from),
        preload=frozenset(document.preload),
    )


def compile_revision(documents: Mapping[str, Document], *, default: Service, zone: str) -> Compiled:
    """Everything the engine needs from one set of documents; raises ValueError if unusable.

    `default` (settings-made) stands in for services that have no Service document;
    the documents were merged over it when they were decoded.
    """
    routes = [d for d in documents.values() if isinstance(d, Route)]
    services = {
        d.name: service_policy(d, zone=zone) for d in documents.values() if isinstance(d, Service)
    }
    return Compiled(
        routes=RouteTable(routes) if routes else None,
        services=services,
        default=service_policy(default, zone=zone),
    )
