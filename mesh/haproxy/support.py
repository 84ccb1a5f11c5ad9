"""What the HAProxy data plane cannot honour of a policy revision, said before it is applied."""

from __future__ import annotations

import re
import shlex

from mesh.haproxy.backends_cfg import RETRY_STATUSES
from mesh.haproxy.regex_cfg import pcre
from mesh.haproxy.routes_cfg import matching
from mesh.policy.auth import NoAuth
from mesh.policy.compile import Compiled, ServicePolicy
from mesh.policy.match import RouteTable
from mesh.policy.route import Route

NOT_YET = "not supported yet on the haproxy data plane"
# Header and cookie names go unquoted into sample fetches, where '#', quotes, '$' and
# the like mean something to HAProxy's parser; these characters mean nothing there.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# HAProxy reads at most 64 words of a configuration line and refuses the file past that.
MOST_WORDS = 64


def unsupported(compiled: Compiled) -> list[str]:
    """Every feature of `compiled` the rendered configuration would not act on, as reasons
    ending in NOT_YET; empty when all of it acts."""
    reasons: list[str] = []
    if compiled.routes is not None:
        for route in compiled.routes.routes:
            reasons += _route(route)
    for name, policy in sorted(compiled.services.items()):
        reasons += _service(f"service {name}", policy)
        reasons += _not_rendered(f"service {name}", policy, compiled.default)
    reasons += _service("the default service policy", compiled.default)
    return reasons


def _not_rendered(where: str, policy: ServicePolicy, default: ServicePolicy) -> list[str]:
    """Retry budget and backoff are HAProxy's own (docs/haproxy.md): a Service document
    may not ask for other values than the gateway's defaults, which it could not honour."""
    ours, theirs = policy.resilience, default.resilience
    reasons = []
    if ours.budget != theirs.budget:
        reasons.append(f"{where}: retries.budget other than the gateway's is {NOT_YET}")
    backoff = (ours.retry.backoff_base, ours.retry.backoff_cap)
    if backoff != (theirs.retry.backoff_base, theirs.retry.backoff_cap):
        reasons.append(f"{where}: retries.backoff other than the gateway's is {NOT_YET}")
    return reasons


def _route(route: Route) -> list[str]:
    where = f"route {route.name}"
    reasons = []
    if not isinstance(route.auth, NoAuth):
        reasons.append(f"{where}: auth is {NOT_YET}")
    if route.rate_limit is not None:
        reasons.append(f"{where}: rate_limit is {NOT_YET}")
    if route.timeouts is not None and route.timeouts.connect is not None:
        # HAProxy sets the connect timeout per backend, never per request.
        reasons.append(f"{where}: timeouts.connect on a route is {NOT_YET}")
    rewrite = route.rewrite
    if rewrite is not None and "\\" in (rewrite.replace_prefix or ""):
        reasons.append(f"{where}: a '\\' in rewrite.replace_prefix is {NOT_YET}")
    for header in route.match.headers:
        if not _PLAIN_NAME.fullmatch(header.name):
            reasons.append(f"{where}: header name {header.name!r} is {NOT_YET}")
        if "}" in (header.exact, header.regex):  # it would close the condition's braces
            reasons.append(f"{where}: header {header.name} value '}}' is {NOT_YET}")
    regexes = [("match.path_regex", route.match.path_regex)]
    regexes += [(f"header {h.name} regex", h.regex) for h in route.match.headers]
    for field, regex in regexes:
        if regex is None:
            continue
        try:
            pcre(regex)
        except ValueError as exc:
            reasons.append(f"{where}: {field} {regex!r}: {exc}: {NOT_YET}")
    if not reasons:  # rendered only once its regexes translate
        longest = max((_words(line) for line in matching(RouteTable([route]))), default=0)
        if longest > MOST_WORDS:
            reasons.append(f"{where}: this many match conditions on one route is {NOT_YET}")
    return reasons


def _service(where: str, policy: ServicePolicy) -> list[str]:
    reasons = []
    key = policy.balance.hash_on
    hashed = policy.balance.algorithm == "consistent_hash" and key.kind != "client_address"
    if hashed and not _PLAIN_NAME.fullmatch(key.name):
        reasons.append(f"{where}: hashing on {key.kind} {key.name!r} is {NOT_YET}")
    statuses = sorted(
        condition
        for condition in policy.resilience.retry.on
        if isinstance(condition, int) and condition not in RETRY_STATUSES
    )
    if statuses:
        codes = ", ".join(map(str, statuses))
        known = ", ".join(map(str, sorted(RETRY_STATUSES)))
        reasons.append(f"{where}: retries on status {codes} (HAProxy knows {known}) are {NOT_YET}")
    return reasons


def _words(line: str) -> int:
    """The words HAProxy reads in a configuration line (quotes group, as a shell's do)."""
    try:
        return len(shlex.split(line))
    except ValueError:  # quoting shlex does not read as HAProxy does: count generously
        return len(line.split())
