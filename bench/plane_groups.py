"""The rendered HAProxy configuration's lines by rule group, and its cumulative variants."""

from __future__ import annotations

from dataclasses import dataclass

from bench.console import BenchError
from mesh.haproxy.layout import FRONTEND

BASE = "base"  # what forwards at all: sections, listeners, servers, timeouts, the probe

# Each group with the prefixes of its lines (leading spaces stripped), in the order the
# variants add them. A line belongs to the group of its longest matching prefix; a line
# no prefix matches stops the bench, so a rule the renderer gains is never left uncounted
# (or silently counted as part of another group).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        BASE,
        (
            "global",
            "defaults",
            "frontend ",
            "backend ",
            "bind ",
            "server ",
            "mode http",
            "option http-keep-alive",
            "timeout ",
            "hard-stop-after ",
            "no log",
            "http-request return status 200 ",  # the probe listener's answer
        ),
    ),
    (
        "edge: request id, x-mesh-* and hop-by-hop removal, Max-Forwards, Content-Length",
        (
            "unique-id-format ",
            "http-request set-var(txn.request_id) ",
            "http-request set-header x-request-id ",
            "http-request del-header ",
            "http-request set-header max-forwards ",
            "http-request set-header content-length ",
        ),
    ),
    (
        "path checks (and body size)",
        (
            "http-request set-path %[path,regsub(",
            "http-request return status 400 ",
            "http-request return status 413 ",
        ),
    ),
    (
        "traceparent",
        ("http-request set-header traceparent ", "http-request del-header traceparent "),
    ),
    (
        "forwarded headers, via",
        (
            "option forwardfor",
            "http-request set-header x-forwarded-",
            "http-request add-header via ",
        ),
    ),
    (
        "answers: Date, Via, hop-by-hop removal",
        (
            "http-after-response set-header date ",
            "http-response add-header via ",
            "http-response del-header ",
        ),
    ),
    ("host normalisation", ("http-request set-var(txn.host) ",)),
    (
        "routing: default routes, 404, origin form",
        (
            "acl known_",
            "http-request set-var(txn.route) ",
            "http-request set-var(txn.service) ",
            "http-request set-path /%[path,field(",
            "http-request return status 404 ",
            "http-request set-uri ",
            "http-request set-path / ",
            "use_backend ",
        ),
    ),
    ("error replies", ("http-error ", "http-after-response set-status ")),
    (
        "backend checks: balance, Host, UO/UH, observe",
        (
            "balance ",
            "hash-type ",
            "http-request set-header host ",
            "http-request set-timeout server ",
            "http-request return status 503 ",
            "default-server ",
        ),
    ),
    (
        "retries",
        ("retries ", "retry-on ", "option redispatch", "http-request disable-l7-retry "),
    ),
    (
        "logging (1 in N sampled)",
        (
            "log ",
            "log-format ",
            "http-after-response set-var(txn.flags) ",
            "http-response set-log-level ",
            # The numbering of sampled answers (mesh.haproxy.answer_order).
            "stick-table ",
            "http-response track-sc0 ",
            "http-response set-var(txn.answer) ",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Variant:
    """The configuration with the base and the groups up to `group` (cumulative)."""

    group: str
    text: str


def group_of(line: str) -> str | None:
    """The group of one configuration line (None: a blank line); BenchError if none fits."""
    rule = line.strip()
    if not rule:
        return None
    matches = [
        (len(prefix), group)
        for group, prefixes in GROUPS
        for prefix in prefixes
        if rule.startswith(prefix)
    ]
    if not matches:
        raise BenchError(
            f"rendered line in no rule group (add it to bench/plane_groups.GROUPS): {rule}"
        )
    return max(matches)[1]


def variants(text: str, default_backend: str) -> list[Variant]:
    """The base, then each group added in turn; the last is `text` itself.

    A variant without the routing group's `use_backend` sends everything to
    `default_backend`, so that every variant still forwards.
    """
    lines = text.splitlines()
    tags = [group_of(line) for line in lines]
    out: list[Variant] = []
    kept: set[str] = set()
    for group, _ in GROUPS:
        kept.add(group)
        chosen = [line for line, tag in zip(lines, tags, strict=True) if tag is None or tag in kept]
        out.append(Variant(group, "\n".join(_routed(chosen, default_backend)) + "\n"))
    return out


def _routed(lines: list[str], backend: str) -> list[str]:
    """`lines` with `default_backend` at the end of the clients' frontend, if none routes."""
    if any(line.strip().startswith("use_backend ") for line in lines):
        return lines
    first = lines.index(f"frontend {FRONTEND}")
    end = next(
        (i for i in range(first + 1, len(lines)) if lines[i] and not lines[i][0].isspace()),
        len(lines),
    )
    while end > first + 1 and not lines[end - 1].strip():
        end -= 1  # before the blank line that ends the section
    return [*lines[:end], f"    default_backend {backend}", *lines[end:]]
