"""Routing by policy: Route documents, else the default routes; the route's auth and rate limit."""

from __future__ import annotations

import random
from collections.abc import Callable

from mesh import clock
from mesh.errors import BadRequest, NoRoute, RateLimited
from mesh.forwarding.auth import Authenticator, Identity, authenticator
from mesh.forwarding.routing import (
    RequestHead,
    Routed,
    Router,
    header,
    hostname,
    is_absolute,
    split_absolute,
)
from mesh.policy.auth import NoAuth
from mesh.policy.match import RouteTable, choose
from mesh.policy.route import Route
from mesh.resilience.ratelimit import TokenBuckets

_DOT_SEGMENTS = (b"/./", b"/../")
# A 404 (NR) names at most this many of the routes it considered: its body stays small.
CONSIDERED_SHOWN = 16


class _Limit:
    """One route's token buckets, and which part of a request names its bucket."""

    __slots__ = ("buckets", "header", "of")

    def __init__(self, route: Route) -> None:
        limit = route.rate_limit
        assert limit is not None
        burst = limit.burst or max(1, round(limit.requests_per_second))
        self.buckets = TokenBuckets(limit.requests_per_second, burst)
        # client_address, consumer, api_key or header:NAME; validation makes sure that a
        # route keyed by consumer or api_key authenticates, so an Identity is given.
        self.of = limit.key
        self.header = limit.key[7:].lower().encode() if limit.key.startswith("header:") else b""

    def key(self, request: RequestHead, identity: Identity | None) -> bytes:
        if self.header:
            # Requests without the header share one bucket.
            return header(request.headers, self.header) or b"-"
        if identity is not None and self.of == "consumer":
            return identity.consumer
        if identity is not None and self.of == "api_key":
            return identity.key_digest
        return request.client


def addressed(request: RequestHead) -> tuple[bytes, bytes]:
    """The host name routes compare and the origin-form target of a request, absolute-form
    included; BadRequest for dot segments in the path."""
    host, target = request.host, request.target
    if is_absolute(target):
        host, target = split_absolute(target)
    path = target.partition(b"?")[0]
    if any(dots in path for dots in _DOT_SEGMENTS) or path.endswith((b"/.", b"/..")):
        # Routes compare paths as sent; a dot segment could reach what a route guards.
        raise BadRequest("dot segments in the path")
    return hostname(host), target


def guarded(table: RouteTable) -> frozenset[str]:
    """The services a route with `auth` sends to: at the edge, reachable through such a
    route only, or the default routes (`/hello/x`, `Host: hello`) would bypass its auth."""
    return frozenset(
        destination.service
        for route in table.routes
        if not isinstance(route.auth, NoAuth)
        for destination in route.to
    )


class PolicyRouter:
    """Compiled once per policy revision; `fallback` is the default routes, or None.

    Building it reads the key files that routes' `auth` names: ValueError if one is
    unusable on this node (the revision is then rejected here). `wall` is the clock that
    token expiry is checked against.
    """

    def __init__(
        self,
        table: RouteTable,
        fallback: Router | None,
        rng: random.Random,
        *,
        wall: Callable[[], float] = clock.wall,
    ) -> None:
        self._table = table
        self._fallback = fallback
        self._rng = rng
        self._limits: dict[str, _Limit] = {}
        self._auth: dict[str, Authenticator] = {
            route.name: authenticator(route.name, route.auth, wall)
            for route in table.routes
            if not isinstance(route.auth, NoAuth)
        }

    @property
    def table(self) -> RouteTable:
        return self._table

    @property
    def fallback(self) -> Router | None:
        return self._fallback

    def authenticator(self, route: str) -> Authenticator | None:
        """The check of `route`'s auth, None without one."""
        return self._auth.get(route)

    def __call__(self, request: RequestHead, now: float) -> Routed:
        name, target = addressed(request)
        matched = self._table.match(request.method, name, target, request.headers)
        if matched is None:
            if self._fallback is None:
                raise self._no_route(
                    f"no route matches {request.method.decode()} {target[:64]!r}", name
                )
            try:
                return self._fallback(request, now)
            except NoRoute as exc:
                # `unknown` too: the names a first call follows (mesh.node.forwarding).
                raise self._no_route(exc.detail, name, exc.service, exc.unknown) from None
        route = matched.route
        target = matched.target
        identity = None
        check = self._auth.get(route.name)
        if check is not None:  # on the path the route matched, after it matched
            identity = check(request, target, now)
            target = identity.target
        if route.rate_limit is not None:
            self._check(route, request, identity, now)
        destination = choose(route, self._rng)
        timeouts = route.timeouts
        rewrite = route.rewrite
        return Routed(
            destination.service,
            target,
            route.name,
            tuple(sorted(destination.subset.items())),
            rewrite.host.encode() if rewrite is not None and rewrite.host else None,
            timeouts.connect if timeouts else None,
            timeouts.request if timeouts else None,
            timeouts.per_try if timeouts else None,
            identity.consumer if identity else None,
            identity.credential if identity else None,
        )

    def _no_route(
        self, detail: str, name: bytes, service: str = "", unknown: tuple[str, ...] = ()
    ) -> NoRoute:
        """A 404 naming the routes for the request's host, those with `auth` left out: a
        client learns no more of what a route guards than the default routes tell it
        (mesh.forwarding.routing.DefaultRoutes.hiding). Routes of other hosts stay unnamed."""
        names = [r.name for r in self._table.hosted(name) if isinstance(r.auth, NoAuth)]
        return NoRoute(
            detail,
            service=service,
            routes=tuple(names[:CONSIDERED_SHOWN]),
            more_routes=max(0, len(names) - CONSIDERED_SHOWN),
            unknown=unknown,
        )

    def _check(
        self, route: Route, request: RequestHead, identity: Identity | None, now: float
    ) -> None:
        limit = self._limits.get(route.name)
        if limit is None:
            limit = self._limits[route.name] = _Limit(route)
        key = limit.key(request, identity)
        if not limit.buckets.allow(key, now):
            raise RateLimited(
                f"rate limit of route {route.name!r} exceeded",
                retry_after=limit.buckets.retry_after(key, now),
            )
