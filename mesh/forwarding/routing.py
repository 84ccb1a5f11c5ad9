"""Routing's vocabulary: where a request goes (`Routed`), the host rule, and the default routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from mesh.errors import NoRoute


class RequestHead(Protocol):
    """What routing reads of a request (mesh.engine.request.Request is one)."""

    method: bytes
    target: bytes  # as sent: origin-form `/path?q`, or absolute-form `http://host/path`
    host: bytes  # the Host header's value, b"" without one
    headers: list[tuple[bytes, bytes]]
    client: bytes  # the peer's address, for keys


class Routed(NamedTuple):  # a tuple: made per request, four times cheaper than a dataclass
    """Where a request goes: the service, the target to send upstream, the route's name.

    A policy route may also narrow the instances (`subset` of metadata), replace the
    Host sent upstream, and override the service's timeouts. A route with edge
    authentication names the `consumer` it proved, and the `credential` header that
    carried an API key (neither reaches the upstream as the client sent it).
    """

    service: str
    target: bytes
    route: str
    subset: tuple[tuple[str, str], ...] = ()
    host: bytes | None = None
    connect_timeout: float | None = None
    request_timeout: float | None = None
    per_try_timeout: float | None = None
    consumer: bytes | None = None
    credential: bytes | None = None  # lower case


# A request and the time it arrived (on the forwarding loop's clock) to where it goes;
# raises a ProxyError (NoRoute, RateLimited, BadRequest) when it goes nowhere.
Router = Callable[[RequestHead, float], Routed]


def hostname(authority: bytes) -> bytes:
    """The host a Host value (or an absolute URL's authority) names, as routes compare it.

    Lower case, without the port and without a final dot (`Hello.:8000` is `hello`); an
    IPv6 literal keeps its brackets (`[::1]:80` is `[::1]`), so it never looks like a name.
    """
    if authority[:1] == b"[":
        return authority[: authority.find(b"]") + 1].lower()
    return authority.partition(b":")[0].rstrip(b".").lower()


def is_absolute(target: bytes) -> bool:
    """An absolute-form target (`http://orders/list`): a client using us as its HTTP proxy."""
    return target[:7].lower() == b"http://"


def split_absolute(target: bytes) -> tuple[bytes, bytes]:
    """An absolute-form target as (authority, origin-form target); the authority ends at
    the path or the query (`http://orders?page=2` is `orders` and `/?page=2`)."""
    rest = target[7:]
    end = len(rest)
    for stop in (b"/", b"?"):
        at = rest.find(stop)
        if at != -1 and at < end:
            end = at
    path = rest[end:]
    return rest[:end], path if path[:1] == b"/" else b"/" + path


def no_route(request: RequestHead, now: float) -> Routed:
    """The router of a gateway without default routes and without Route policies."""
    raise NoRoute("no route matches (default routes are off)")


class DefaultRoutes:
    """A request names its service: by absolute URL (proxy use), `Host`, or first path segment.

    The segment is stripped before forwarding (`/hello/x` reaches hello as `/x`).
    """

    __slots__ = ("_knows",)

    def __init__(self, knows: Callable[[str], bool]) -> None:
        self._knows = knows

    def hiding(self, services: frozenset[str]) -> DefaultRoutes:
        """These routes as if `services` were not in the mesh: the same 404 as a name that
        is not, so a client learns nothing of them (the edge hides what a route's auth
        guards, see mesh.forwarding.policy_routes.guarded)."""
        if not services:
            return self
        knows = self._knows
        return DefaultRoutes(lambda service: service not in services and knows(service))

    def __call__(self, request: RequestHead, now: float) -> Routed:
        knows = self._knows
        target = request.target
        if target[:1] != b"/" and is_absolute(target):  # origin-form, the usual, skips it
            authority, target = split_absolute(target)
            service = hostname(authority).decode("latin-1")
            if knows(service):
                return Routed(service, target, "absolute")
            raise NoRoute(f"no service named {service!r}", service=service, unknown=(service,))
        service = hostname(request.host).decode("latin-1")
        if service and knows(service):
            return Routed(service, target, "host")
        segment = ""
        if target.startswith(b"/"):
            end = len(target)
            for stop in (b"/", b"?"):
                at = target.find(stop, 1)
                if at != -1 and at < end:
                    end = at
            segment = target[1:end].decode("latin-1")
            if segment and knows(segment):
                rest = target[end:]
                return Routed(segment, rest if rest.startswith(b"/") else b"/" + rest, "path")
        shown = target[:64].decode("latin-1")
        raise NoRoute(
            f"no service matches Host {service!r} or path {shown!r}",
            unknown=tuple(name for name in (service, segment) if name),
        )


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
