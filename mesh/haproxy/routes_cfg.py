"""Route matching in HAProxy's words: the Python engine's order, as first-match-wins rules."""

from __future__ import annotations

import re
from collections.abc import Iterator

from mesh.haproxy.layout import backend_name
from mesh.haproxy.regex_cfg import pcre
from mesh.haproxy.words import quote
from mesh.policy.match import Entry, RouteTable, normal_prefix
from mesh.policy.route import HeaderMatch, Route

UNMATCHED = "!{ var(txn.route) -m found }"
IDEMPOTENT = "GET HEAD OPTIONS PUT DELETE TRACE"


def ordered(table: RouteTable) -> Iterator[tuple[str, Entry]]:
    """(host condition, route) in the order RouteTable tries them for any request.

    Exact hosts exclude each other, as do wildcard suffixes of one length and path
    conditions of one kind and length: one static list then tries, for every request,
    the routes that take it in the engine's order (mesh.policy.match.RouteTable).
    """
    exact: dict[str, list[Entry]] = {}
    suffixes: dict[str, list[Entry]] = {}
    anywhere: list[Entry] = []
    for route in table.routes:
        entry = Entry(route)
        hosts = {host.lower() for host in route.match.hosts}
        if not hosts:
            anywhere.append(entry)
        for host in hosts:
            if host.startswith("*."):
                suffixes.setdefault(host[1:], []).append(entry)
            else:
                exact.setdefault(host, []).append(entry)
    for host in sorted(exact):
        for entry in _by_path(exact[host]):
            yield f"{{ var(txn.host) -m str -- {host} }}", entry
    for suffix in sorted(suffixes, key=lambda s: (-len(s), s)):
        for entry in _by_path(suffixes[suffix]):
            yield f"{{ var(txn.host) -m end {suffix} }}", entry
    for entry in _by_path(anywhere):
        yield "", entry


def _by_path(entries: list[Entry]) -> list[Entry]:
    """One host's routes: exact paths, prefixes from the longest, regexes, `/`, the rest."""

    def group(entry: Entry) -> tuple[int, int]:
        match = entry.route.match
        if match.path_exact is not None:
            return 0, 0
        if match.path_prefix is not None:
            prefix = normal_prefix(match.path_prefix)
            return (3, 0) if prefix == "/" else (1, -len(prefix))
        return (2, 0) if match.path_regex is not None else (4, 0)

    return sorted(entries, key=lambda entry: (group(entry), entry.rank()))


def path_condition(route: Route) -> str:
    match = route.match
    if match.path_exact is not None:
        return f"{{ path -m str {quote(match.path_exact)} }}"
    if match.path_prefix is not None:
        prefix = normal_prefix(match.path_prefix)
        if prefix == "/":
            return "{ path -m beg / }"
        # Whole segments: the prefix itself, or it followed by '/'.
        return f"{{ path -m str {quote(prefix)} }} || {{ path -m beg {quote(prefix + '/')} }}"
    if match.path_regex is not None:
        return f"{{ path -m reg -- {quote(pcre(match.path_regex))} }}"
    return ""


def header_condition(header: HeaderMatch) -> str:
    name = header.name.lower()
    # `--` ends the options: a value starting with '-' is a value, not a flag.
    if header.exact == "":
        return f"{{ req.fhdr({name}) -m len 0 }}"
    if header.exact is not None:
        return f"{{ req.fhdr({name}) -m str -- {quote(header.exact)} }}"
    if header.regex is not None:
        return f"{{ req.fhdr({name}) -m reg -- {quote(pcre(header.regex))} }}"
    return f"{{ req.fhdr_cnt({name}) {'gt' if header.present else 'eq'} 0 }}"


def matching(table: RouteTable) -> list[str]:
    """Rules setting `txn.route` to the first route whose conditions hold."""
    lines = []
    for host, entry in ordered(table):
        route = entry.route
        rest = [host, *(header_condition(h) for h in route.match.headers)]
        if route.match.methods:
            rest.append("{ method " + " ".join(route.match.methods) + " }")
        path = path_condition(route)
        conditions = " ".join(c for c in rest if c)
        # `||` binds loosest: a prefix's two path tests each carry the other conditions.
        for alternative in path.split(" || ") if path else [""]:
            tests = " ".join(c for c in (UNMATCHED, alternative, conditions) if c)
            lines.append(f"http-request set-var(txn.route) str({route.name}) if {tests}")
    return lines


def is_route(name: str) -> str:
    return f"{{ var(txn.route) -m str {name} }}"


def rewriting(route: Route) -> list[str]:
    """The matched route's path and Host rewrites (the query is kept by `replace-path`)."""
    lines = []
    entry = Entry(route)
    strip, replace = entry.strip, entry.replace.decode()
    if strip is not None and (strip or replace):
        removed = re.escape(strip.decode()).replace("'", "\\x27")
        fmt = replace.replace("%", "%%")
        if replace.endswith("/"):
            pairs = [(f"^{removed}(?:/(.*))?$", fmt + "\\1")]
        elif replace:
            pairs = [(f"^{removed}(/.*)?$", fmt + "\\1")]
        else:
            pairs = [(f"^{removed}$", "/"), (f"^{removed}(/.*)$", "\\1")]
        for regex, to in pairs:
            lines.append(
                f"http-request replace-path {quote(regex)} {quote(to)} if {is_route(route.name)}"
            )
    if route.rewrite is not None and route.rewrite.host:
        lines.append(f"http-request set-header host {route.rewrite.host} if {is_route(route.name)}")
    return lines


def drawing(route: Route) -> list[str]:
    """The weighted draw of a route with several destinations (mesh.policy.match.choose)."""
    going = [d for d in route.to if d.weight]
    if len(going) == 1:
        return []
    total = sum(d.weight for d in going)
    return [f"http-request set-var(txn.pick) rand({total}) if {is_route(route.name)}"]


def choosing(route: Route) -> list[str]:
    """`use_backend` lines: the one destination, or the one the draw landed on."""
    chosen = is_route(route.name)
    going = [d for d in route.to if d.weight]
    names = [backend_name(d.service, tuple(sorted(d.subset.items()))) for d in going]
    if len(going) == 1:
        return [f"use_backend {names[0]} if {chosen}"]
    lines = []
    below = 0
    for destination, name in zip(going, names, strict=True):
        below += destination.weight
        lines.append(f"use_backend {name} if {chosen} {{ var(txn.pick) -m int lt {below} }}")
    return lines
