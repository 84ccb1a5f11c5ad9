"""Routing by policy: Route documents first, then (optionally) the default routes; rate limits."""

from __future__ import annotations

import random

from mesh.errors import BadRequest, NoRoute, RateLimited
from mesh.forwarding.routing import (
    RequestHead,
    Routed,
    Router,
    header,
    hostname,
    is_absolute,
    split_absolute,
)
from mesh.policy.match import RouteTable, choose
from mesh.policy.route import Route
from mesh.resilience.ratelimit import TokenBuckets

_DOT_SEGMENTS = (b"/./", b"/../")


class _Limit:
    """One route's token buckets, and which part of a request names its bucket."""

    __slots__ = ("buckets", "header")

    def __init__(self, route: Route) -> None:
        limit = route.rate_limit
        assert limit is not None
        burst = limit.burst or max(1, round(limit.requests_per_second))
        self.buckets = TokenBuckets(limit.requests_per_second, burst)
        # client_address or header:NAME; validation refuses api_key until edge authentication.
        self.header = limit.key[7:].lower().encode() if limit.key.startswith("header:") else b""

    def key(self, request: RequestHead) -> bytes:
        if not self.header:
            return request.client
        # Requests without the header share one bucket.
        return header(request.headers, self.header) or b"-"


class PolicyRouter:
    """Compiled once per policy revision; `fallback` is the default routes, or None."""

    def __init__(self, table: RouteTable, fallback: Router | None, rng: random.Random) -> None:
        self._table = table
        self._fallback = fallback
        self._rng = rng
        self._limits: dict[str, _Limit] = {}

    def __call__(self, request: RequestHead, now: float) -> Routed:
        host, target = request.host, request.target
        if is_absolute(target):
            host, target = split_absolute(target)
        path = target.partition(b"?")[0]
        if any(dots in path for dots in _DOT_SEGMENTS) or path.endswith((b"/.", b"/..")):
            # Routes compare paths as sent; a dot segment could reach what a route guards.
            raise BadRequest("dot segments in the path")
        matched = self._table.match(request.method, hostname(host), target, request.headers)
        if matched is None:
            if self._fallback is not None:
                return self._fallback(request, now)
            raise NoRoute(f"no route matches {request.method.decode()} {target[:64]!r}")
        route = matched.route
        if route.rate_limit is not None:
            self._check(route, request, now)
        destination = choose(route, self._rng)
        timeouts = route.timeouts
        rewrite = route.rewrite
        return Routed(
            destination.service,
            matched.target,
            route.name,
            tuple(sorted(destination.subset.items())),
            rewrite.host.encode() if rewrite is not None and rewrite.host else None,
            timeouts.connect if timeouts else None,
            timeouts.request if timeouts else None,
            timeouts.per_try if timeouts else None,
        )

    def _check(self, route: Route, request: RequestHead, now: float) -> None:
        limit = self._limits.get(route.name)
        if limit is None:
            limit = self._limits[route.name] = _Limit(route)
        key = limit.key(request)
        if not limit.buckets.allow(key, now):
            raise RateLimited(
                f"rate limit of route {route.name!r} exceeded",
                retry_after=limit.buckets.retry_after(key, now),
            )
