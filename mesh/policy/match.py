"""Route matching: the Routes of one revision compiled into a table consulted per request."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from mesh.policy.regex import compile_bytes
from mesh.policy.route import Destination, HeaderMatch, Route

Header = tuple[bytes, bytes]


class Matched(NamedTuple):
    """The route a request matched and the target to send upstream (rewritten)."""

    route: Route
    target: bytes


def normal_prefix(prefix: str) -> str:
    """`/api/` and `/api` are one prefix (whole segments match); `/` stays itself."""
    return prefix.rstrip("/") or "/"


def choose(route: Route, rng: random.Random) -> Destination:
    """One of the route's destinations, each with probability weight / total weight."""
    if len(route.to) == 1:
        return route.to[0]
    pick = rng.randrange(sum(destination.weight for destination in route.to))
    for destination in route.to[:-1]:
        pick -= destination.weight
        if pick < 0:
            return destination
    return route.to[-1]


class RouteTable:
    """Every route of one policy revision, compiled once; `match` answers per request.

    Hosts first: the exact host's routes (case-insensitive, port ignored), then wildcard
    hosts from the longest suffix, then routes naming no host; the first route in that
    order whose conditions all hold wins. Within one host: the exact path, then prefixes
    from the longest, then regexes, then the catch-alls (prefix `/`, then no path
    condition). Routes on the same path try those with more conditions (methods,
    headers) first, then go by name.
    Paths are compared as sent: no percent-decoding or dot-segment removal.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = routes = tuple(routes)
        self._exact: dict[bytes, _Bucket] = {}
        self._wildcard: dict[bytes, _Bucket] = {}  # by suffix with its dot: b".example.com"
        self._any = _Bucket()
        for route in routes:
            entry = Entry(route)
            hosts = {host.lower() for host in route.match.hosts}
            if not hosts:
                self._any.add(entry)
            for host in hosts:
                table = self._wildcard if host.startswith("*.") else self._exact
                table.setdefault(host.removeprefix("*").encode(), _Bucket()).add(entry)
        for bucket in (*self._exact.values(), *self._wildcard.values(), self._any):
            bucket.sort()

    def match(
        self, method: bytes, hostname: bytes, target: bytes, headers: Sequence[Header]
    ) -> Matched | None:
        """The route for a request, or None.

        `hostname` is the Host as routes compare it: lower case, no port, no final dot
        (mesh.forwarding.routing.hostname); `target` is origin-form.
        """
        path = target.partition(b"?")[0]
        for entry in self.tried(hostname, path):
            if entry.accepts(method, headers):
                return Matched(entry.route, entry.rewrite(target, path))
        return None

    def tried(self, hostname: bytes, path: bytes) -> Iterator[Entry]:
        """The routes whose host and path conditions take a request, in the order `match`
        tries their other conditions (a route naming two hosts that fit comes twice).

        `mesh explain` reads the same order, so its answer cannot disagree with `match`.
        """
        for bucket in self._buckets(hostname):
            yield from bucket.tried(path)

    def hosted(self, hostname: bytes) -> list[Route]:
        """The routes whose host condition takes `hostname`, each once, in the order tried."""
        seen: dict[str, Route] = {}
        for bucket in self._buckets(hostname):
            for entry in bucket.entries():
                seen.setdefault(entry.route.name, entry.route)
        return list(seen.values())

    def _buckets(self, name: bytes) -> Iterator[_Bucket]:
        bucket = self._exact.get(name)
        if bucket is not None:
            yield bucket
        if self._wildcard:
            dot = name.find(b".", 1)  # from 1: the wildcard stands for at least one label
            while dot != -1:
                bucket = self._wildcard.get(name[dot:])
                if bucket is not None:
                    yield bucket
                dot = name.find(b".", dot + 1)
        yield self._any


class _Bucket:
    """The routes of one host or host pattern, by path condition, in the order they are tried."""

    __slots__ = ("exact", "prefixes", "regexes", "rest")

    def __init__(self) -> None:
        self.exact: dict[bytes, list[Entry]] = {}
        self.prefixes: dict[bytes, list[Entry]] = {}
        self.regexes: list[tuple[re.Pattern[bytes], Entry]] = []
        self.rest: list[Entry] = []  # no path condition

    def add(self, entry: Entry) -> None:
        match = entry.route.match
        if match.path_exact is not None:
            self.exact.setdefault(match.path_exact.encode(), []).append(entry)
        elif match.path_prefix is not None:
            prefix = normal_prefix(match.path_prefix).encode()
            self.prefixes.setdefault(prefix, []).append(entry)
        elif match.path_regex is not None:
            self.regexes.append((compile_bytes(match.path_regex), entry))
        else:
            self.rest.append(entry)

    def sort(self) -> None:
        for entries in (*self.exact.values(), *self.prefixes.values(), self.rest):
            entries.sort(key=Entry.rank)
        self.regexes.sort(key=lambda pair: pair[1].rank())

    def tried(self, path: bytes) -> Iterator[Entry]:
        """Its routes whose path condition takes `path`, in the order they are tried."""
        if path[:1] != b"/":  # `*` or absolute-form: only routes without a path condition
            yield from self.rest
            return
        yield from self.exact.get(path, ())
        # Prefixes other than `/`, the longest first: the path itself, then each parent.
        end = len(path) if self.prefixes else 0
        while end > 1:
            yield from self.prefixes.get(path[:end], ())
            end = path.rfind(b"/", 0, end)
        for pattern, entry in self.regexes:
            if pattern.fullmatch(path):
                yield entry
        yield from self.prefixes.get(b"/", ())
        yield from self.rest

    def entries(self) -> Iterator[Entry]:
        for entries in (*self.exact.values(), *self.prefixes.values(), self.rest):
            yield from entries
        for _, entry in self.regexes:
            yield entry


class Entry:
    """One route compiled: its conditions besides host and path, and its path rewrite."""

    __slots__ = ("headers", "methods", "replace", "route", "strip", "strip_dir")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.methods = frozenset(method.encode() for method in route.match.methods)
        self.headers = tuple(_HeaderTest(header) for header in route.match.headers)
        rewrite = route.rewrite
        prefix: str | None = None
        if rewrite is not None and rewrite.strips_match:
            prefix = route.match.path_prefix
        elif rewrite is not None and isinstance(rewrite.strip_prefix, str):
            prefix = rewrite.strip_prefix
        # The removed prefix never keeps its trailing '/'; for `/` nothing is removed.
        self.strip = None if prefix is None else prefix.rstrip("/").encode()
        self.strip_dir = b"" if self.strip is None else self.strip + b"/"
        self.replace = (rewrite.replace_prefix or "").encode() if rewrite is not None else b""

    def rank(self) -> tuple[int, str]:
        # More conditions first: a narrower route on the same path must not be hidden.
        return -(bool(self.methods) + len(self.headers)), self.route.name

    def accepts(self, method: bytes, headers: Sequence[Header]) -> bool:
        if self.methods and method not in self.methods:
            return False
        return all(test.holds(headers) for test in self.headers)

    def refusal(self, method: bytes, headers: Sequence[Header]) -> HeaderMatch | None:
        """Which header condition fails, once `accepts` said no and the method is allowed."""
        for test, condition in zip(self.headers, self.route.match.headers, strict=True):
            if not test.holds(headers):
                return condition
        return None

    def rewrite(self, target: bytes, path: bytes) -> bytes:
        strip = self.strip
        if strip is None or not (path == strip or path.startswith(self.strip_dir)):
            return target
        rest = path[len(strip) :]
        if self.replace.endswith(b"/") and rest.startswith(b"/"):
            rest = rest[1:]
        return (self.replace + rest or b"/") + target[len(path) :]


class _HeaderTest:
    """A header condition on the request's headers, names compared case-insensitively."""

    __slots__ = ("exact", "name", "present", "regex")

    def __init__(self, match: HeaderMatch) -> None:
        self.name = match.name.lower().encode()
        self.exact = None if match.exact is None else match.exact.encode()
        self.regex = None if match.regex is None else compile_bytes(match.regex)
        self.present = match.present is not False

    def holds(self, headers: Sequence[Header]) -> bool:
        for name, value in headers:
            if (
                name.lower() == self.name
                and (self.exact is None or value == self.exact)
                and (self.regex is None or self.regex.fullmatch(value) is not None)
            ):
                return self.present
        return not self.present
