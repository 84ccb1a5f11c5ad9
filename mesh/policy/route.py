"""Route documents: which requests go to which services, rewritten and limited how."""

from __future__ import annotations

from typing import Annotated

import msgspec

from mesh.messages import Label, MetaKey
from mesh.policy.auth import ApiKeyAuth, Auth, NoAuth
from mesh.policy.fields import (
    Duration,
    HeaderValue,
    HostName,
    HostPattern,
    Method,
    PolicyName,
    RateKey,
    Regex,
    Token,
    UrlPath,
)


class HeaderMatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One request header condition: exactly one of `exact`, `regex` or `present`."""

    name: Token
    exact: HeaderValue | None = None
    regex: Regex | None = None
    present: bool | None = None  # false: the header must be absent

    def __post_init__(self) -> None:
        given = [self.exact, self.regex, self.present]
        if sum(test is not None for test in given) != 1:
            raise ValueError("give exactly one of exact, regex or present")


class RouteMatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a request must look like: every condition given must hold; none given matches all.

    Hosts are exact (case-insensitive, port ignored) or `*.example.com` (one or more
    labels). Prefixes match whole path segments: `/api` takes `/api` and `/api/x`, not
    `/apix`; a trailing '/' is ignored. Regexes must match the whole path, query excluded.
    """

    hosts: Annotated[tuple[HostPattern, ...], msgspec.Meta(max_length=64)] = ()
    path_prefix: UrlPath | None = None
    path_exact: UrlPath | None = None
    path_regex: Regex | None = None
    methods: Annotated[tuple[Method, ...], msgspec.Meta(max_length=16)] = ()
    headers: Annotated[tuple[HeaderMatch, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        paths = [self.path_prefix, self.path_exact, self.path_regex]
        if sum(path is not None for path in paths) > 1:
            raise ValueError("give at most one of path_prefix, path_exact or path_regex")


class Destination(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One way out of a route: a service, its share of traffic, and which of its instances."""

    service: PolicyName
    weight: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 1
    # Instance metadata the chosen instance must carry, e.g. {version: v2}.
    subset: Annotated[dict[MetaKey, Label], msgspec.Meta(max_length=16)] = {}


class Rewrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the upstream request differs: path prefix swapped, Host replaced; query kept.

    `strip_prefix: true` removes the matched `path_prefix`; a path removes that prefix
    when the request has it. `replace_prefix` goes where the removed prefix was (alone,
    it replaces the matched `path_prefix`).
    """

    strip_prefix: bool | UrlPath = False
    replace_prefix: UrlPath | None = None
    host: HostName | None = None

    @property
    def strips_match(self) -> bool:
        """Whether it removes the route's matched `path_prefix` (not a prefix of its own)."""
        return self.strip_prefix is True or (
            self.strip_prefix is False and self.replace_prefix is not None
        )


class RouteTimeouts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Overrides of the target service's timeouts for this route; unset ones are inherited."""

    connect: Duration | None = None
    request: Duration | None = None
    per_try: Duration | None = None


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A token bucket per key; `burst` defaults to one second's worth of requests.

    `consumer` and `api_key` count what the route's `auth` established: the consumer's
    name, or the digest of the key presented (a consumer may hold several keys).
    """

    requests_per_second: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    key: RateKey = "client_address"


# The route labels of requests that no Route document took: the default routes (by
# absolute-form URL, Host, first path segment) and an agent's inbound listener. Metrics,
# logs and load figures tell them apart from policy routes by name, so no policy may take one.
BUILT_IN_ROUTES = frozenset({"absolute", "host", "path", "inbound"})


class Route(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="Route",
    tag_field="kind",
):
    """Requests matching `match` go to one of `to`, chosen by weight (see mesh.policy.match)."""

    name: PolicyName
    match: RouteMatch = RouteMatch()
    to: Annotated[tuple[Destination, ...], msgspec.Meta(min_length=1, max_length=32)]
    rewrite: Rewrite | None = None
    timeouts: RouteTimeouts | None = None
    rate_limit: RateLimit | None = None
    auth: Auth = NoAuth()

    def __post_init__(self) -> None:
        if self.name in BUILT_IN_ROUTES:
            names = ", ".join(sorted(BUILT_IN_ROUTES))
            raise ValueError(f"name: {self.name} is kept for the built-in routes ({names})")
        if not any(destination.weight for destination in self.to):
            raise ValueError("to: at least one destination needs a weight above 0")
        if self.rewrite and self.rewrite.strips_match and self.match.path_prefix is None:
            raise ValueError("rewrite: removing the matched prefix needs match.path_prefix")
        key = self.rate_limit.key if self.rate_limit else ""
        if key == "consumer" and isinstance(self.auth, NoAuth):
            raise ValueError("rate_limit: key consumer needs auth (api_key or jwt) on the route")
        if key == "api_key" and not isinstance(self.auth, ApiKeyAuth):
            raise ValueError("rate_limit: key api_key needs auth of type api_key on the route")
