"""What the gateway and its HAProxy agree on: backend and server names, and the log line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Subset = tuple[tuple[str, str], ...]  # instance metadata a route requires, sorted

# HAProxy's runtime states for a server: `ready` takes requests, `drain` finishes what it
# has and takes none new, `maint` takes nothing (an ejected or failing instance).
ServerState = Literal["ready", "drain", "maint"]

# HAProxy weights run 0..256; the mesh's 1..10,000 are scaled to them per backend.
MOST_WEIGHT = 256


def backend_name(service: str, subset: Subset = ()) -> str:
    """`hello`, or `hello.1f2e3d4c` for the instances of hello carrying `subset`.

    Service names are [A-Za-z0-9_-], which HAProxy takes as they are; a subset is hashed,
    its labels being free text.
    """
    if not subset:
        return service
    digest = hashlib.sha256(repr(subset).encode()).hexdigest()[:8]
    return f"{service}.{digest}"


def service_of(backend: str) -> str:
    """The service a backend_name names (`hello.1f2e3d4c` is one of hello's subsets)."""
    return backend.partition(".")[0]


@dataclass(frozen=True, slots=True)
class Backend:
    """One HAProxy backend: the instances of `service` that carry `subset`."""

    service: str
    subset: Subset = ()

    @property
    def name(self) -> str:
        return backend_name(self.service, self.subset)


@dataclass(frozen=True, slots=True)
class Server:
    """One instance as a server of a backend; its name is the instance's (a mesh name)."""

    name: str
    host: str
    port: int
    weight: int  # 0..MOST_WEIGHT
    state: ServerState


def scaled_weights(weights: dict[str, int]) -> dict[str, int]:
    """Mesh weights (1..10,000) as HAProxy's (1..256), keeping their ratios as well as
    256 steps can: the heaviest gets 256 when any exceeds it, none drops to 0."""
    heaviest = max(weights.values(), default=0)
    if heaviest <= MOST_WEIGHT:
        return dict(weights)
    return {name: max(1, round(w * MOST_WEIGHT / heaviest)) for name, w in weights.items()}


# The frontend clients reach: a request HAProxy answers there has it as its backend.
FRONTEND = "mesh"

# Where a sampling HAProxy numbers each server's answers (render.py): a stick table keyed
# by the server's name, the instance's. Services are [A-Za-z0-9_-], so no backend of a
# service can take this name.
ANSWERS_TABLE = "mesh:answers"
# A server's answer numbers on a line: the number this answer got, and for a line without
# an answer (a timeout, say) how many the server had given when the line was written.
ANSWER_FIELDS = ("%[var(txn.answer)]", f"%[srv_name,table_gpc0({ANSWERS_TABLE})]")

# The request log line HAProxy sends the gateway (`log ... format raw`), fields joined by
# a tab: backend, server, status, termination state, retries (`+` when redispatched),
# connect, response and total times (ms, -1 when not reached), the worker's pid and the
# ANSWER_FIELDS, the route's name (set per matched route), the answer's x-mesh-flags,
# method, path (HAProxy escapes it), and last the request id, which is the client's own
# x-request-id and may hold a tab: last, it cannot shift the fields a reader acts on.
LOG_FIELDS = (
    "%b",
    "%s",
    "%ST",
    "%tsc",
    "%rc",
    "%Tc",
    "%Tr",
    "%Ta",
    "%pid",
    *ANSWER_FIELDS,
    "%[var(txn.route)]",
    "%[var(txn.flags)]",
    "%HM",
    "%HPO",
    "%ID",
)


def log_format(numbered: bool) -> str:
    """The log-format line's value; `numbered`: with the answer numbers of a sampling
    HAProxy, else `-` in their place (nothing is looked up for them)."""
    fields = (f if numbered or f not in ANSWER_FIELDS else "-" for f in LOG_FIELDS)
    return "\\t".join(fields)
