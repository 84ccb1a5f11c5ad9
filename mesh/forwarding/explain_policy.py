"""The policies in force for one request, as `mesh explain` shows them."""

from __future__ import annotations

from collections.abc import Mapping

from mesh.forwarding.explanation import Chosen, Policy
from mesh.policy.auth import ApiKeyAuth, JwtAuth
from mesh.policy.compile import ServicePolicy
from mesh.policy.route import Route


def route_in_force(route: Route, target: bytes, revisions: Mapping[str, int]) -> Chosen:
    auth = route.auth
    said = "none"
    if isinstance(auth, ApiKeyAuth | JwtAuth):
        said = f"{auth.__struct_config__.tag} (admits {', '.join(auth.allow) or 'any holder'})"
    limit = route.rate_limit
    rate = ""
    if limit is not None:
        burst = limit.burst or "1 s worth"
        rate = f"{limit.requests_per_second:g}/s per {limit.key}, burst {burst}"
    rewrite = route.rewrite
    timeouts = route.timeouts
    overrides: dict[str, float] = {}
    if timeouts is not None:
        given = {"connect": timeouts.connect, "request": timeouts.request}
        given["per_try"] = timeouts.per_try
        overrides = {k: float(v) for k, v in given.items() if v is not None}
    return Chosen(
        route=route.name,
        by="policy",
        revision=revisions.get(f"route.{route.name}"),
        target=target.decode("latin-1"),
        host=rewrite.host if rewrite is not None and rewrite.host else None,
        auth=said,
        rate_limit=rate,
        timeouts=overrides,
    )


def policy_in_force(policy: ServicePolicy, revision: int | None) -> Policy:
    balance, resilience = policy.balance, policy.resilience
    retry, outlier = resilience.retry, resilience.outlier
    return Policy(
        revision=revision,
        algorithm=balance.algorithm,
        zone=balance.zone,
        slow_start=float(balance.slow_start_window),
        panic_threshold=float(balance.panic_threshold),
        connect_timeout=float(resilience.connect_timeout),
        request_timeout=float(resilience.request_timeout),
        per_try_timeout=None if retry.per_try_timeout is None else float(retry.per_try_timeout),
        retries=retry.attempts,
        retry_on=sorted(str(condition) for condition in retry.on),
        outlier={
            "consecutive_5xx": outlier.consecutive_5xx,
            "consecutive_gateway_errors": outlier.consecutive_gateway_errors,
            "base_ejection": float(outlier.base_ejection),
            "max_ejection": float(outlier.max_ejection),
            "max_ejected_percent": outlier.max_ejected_percent,
        },
        max_requests=resilience.max_requests,
        allow_from=None if policy.allow_from is None else sorted(policy.allow_from),
    )
