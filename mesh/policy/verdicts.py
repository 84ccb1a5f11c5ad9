"""Why each route of a table did or did not take a request, in the words of `mesh explain`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from mesh.policy.match import Header, RouteTable
from mesh.policy.route import HeaderMatch, Route

# matched: the route `match` returns; outranked: its conditions hold too, but another is
# tried first; the rest name the first condition that failed.
Outcome = Literal["matched", "outranked", "method", "header", "path", "host"]
_SHOWN = 96  # characters of a request's path quoted in a reason


class Verdict(msgspec.Struct, frozen=True):
    route: str
    outcome: Outcome
    reason: str


def verdicts(
    table: RouteTable, method: bytes, hostname: bytes, target: bytes, headers: Sequence[Header]
) -> list[Verdict]:
    """One verdict per route: first those whose host and path fit, in the order `match`
    tries them (so the matched one is the first whose other conditions hold), then those
    whose path does not fit, then those of other hosts.

    The decisions are `RouteTable.tried` and `Entry.accepts`, the very code `match` runs;
    only the words are made here.
    """
    path = target.partition(b"?")[0]
    matched = table.match(method, hostname, target, headers)
    winner = matched.route if matched is not None else None
    out: list[Verdict] = []
    seen: set[str] = set()
    for entry in table.tried(hostname, path):
        route = entry.route
        if route.name in seen:
            continue
        seen.add(route.name)
        if route is winner:
            out.append(Verdict(route.name, "matched", _conditions(route)))
        elif entry.accepts(method, headers):
            assert winner is not None  # match takes the first route that accepts
            out.append(Verdict(route.name, "outranked", f"{winner.name} is tried first"))
        elif entry.methods and method not in entry.methods:
            wanted = ", ".join(route.match.methods)
            out.append(Verdict(route.name, "method", f"method {method.decode()} is not {wanted}"))
        else:
            failed = entry.refusal(method, headers)
            assert failed is not None  # the method is allowed, so a header condition failed
            out.append(Verdict(route.name, "header", _needs(failed)))
    shown = path[:_SHOWN].decode("latin-1")
    for route in table.hosted(hostname):
        if route.name not in seen:
            seen.add(route.name)
            out.append(Verdict(route.name, "path", _path_reason(route, shown)))
    host = hostname.decode("latin-1")
    for route in sorted(table.routes, key=lambda r: r.name):
        if route.name not in seen:
            wanted = ", ".join(route.match.hosts)
            out.append(Verdict(route.name, "host", f"host {host or '(none)'} is not {wanted}"))
    return out


def _conditions(route: Route) -> str:
    match = route.match
    said = []
    if match.hosts:
        said.append("host " + ", ".join(match.hosts))
    if match.path_exact is not None:
        said.append(f"path {match.path_exact}")
    elif match.path_prefix is not None:
        said.append(f"path under {match.path_prefix}")
    elif match.path_regex is not None:
        said.append(f"path matching {match.path_regex}")
    if match.methods:
        said.append("method " + ", ".join(match.methods))
    said.extend(_needs(header).removeprefix("needs ") for header in match.headers)
    return "; ".join(said) if said else "matches every request"


def _needs(header: HeaderMatch) -> str:
    if header.exact is not None:
        return f"needs header {header.name}: {header.exact}"
    if header.regex is not None:
        return f"needs header {header.name} matching {header.regex}"
    return f"needs header {header.name}" if header.present else f"needs no header {header.name}"


def _path_reason(route: Route, path: str) -> str:
    match = route.match
    if not path.startswith("/"):
        return f"target {path} is not a path"
    if match.path_exact is not None:
        return f"path {path} is not {match.path_exact}"
    if match.path_prefix is not None:
        return f"path {path} is not under {match.path_prefix}"
    return f"path {path} does not match {match.path_regex}"
