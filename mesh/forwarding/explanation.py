"""`mesh explain` on the wire: the question asked of a node, and its answer's parts."""

from __future__ import annotations

from typing import Annotated

import msgspec

from mesh.policy.verdicts import Verdict

# A CR or LF would end the line: no single request head carries one in a field.
_Text = Annotated[str, msgspec.Meta(max_length=8192, pattern=r"^[^\r\n]*$")]


class Question(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request as a client would send it: origin-form `target`, `host` its Host header."""

    method: Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")]
    target: _Text
    host: Annotated[str, msgspec.Meta(max_length=1024, pattern=r"^[^\r\n]*$")] = ""
    headers: Annotated[tuple[tuple[_Text, _Text], ...], msgspec.Meta(max_length=64)] = ()


class Instance(msgspec.Struct, frozen=True):
    """One instance of a service as the answering node sees it."""

    instance: str
    address: str
    state: str  # the view's: alive, suspect, draining, down, left
    health: str  # passing or failing (its agent's checks)
    candidate: bool  # the next request's balancer may pick it
    zone: str
    weight: int
    version: str
    ejected_until: float | None  # wall-clock time its ejection ends here
    in_flight: int | None  # requests in flight to it from here; None: not counted
    slow_start: float | None  # share of its weight while warming up; None: warm


class Policy(msgspec.Struct, frozen=True):
    """How the answering node calls one service; `revision` of its Service document."""

    revision: int | None  # None: no Service document, the node's settings hold
    algorithm: str
    zone: str  # the caller's zone when zone-aware, else ""
    slow_start: float
    panic_threshold: float
    connect_timeout: float
    request_timeout: float
    per_try_timeout: float | None
    retries: int
    retry_on: list[str]
    outlier: dict[str, float]
    max_requests: int
    allow_from: list[str] | None  # None: any caller


class Destination(msgspec.Struct, frozen=True):
    """One way out of the route: a service's subset, its share, and its instances."""

    service: str
    weight: int
    share: float  # of the route's requests, chosen at random per request
    subset: dict[str, str]
    known: bool  # the service is in the node's view
    policy: Policy
    in_flight: int  # requests in flight to the service from here (max_requests counts them)
    panicking: bool  # too few healthy: balancing over every alive instance
    instances: list[Instance]


class Chosen(msgspec.Struct, frozen=True):
    """The route taken: by a Route document (`revision`) or a default route (host, path...)."""

    route: str
    by: str  # "policy" or "default"
    revision: int | None
    target: str  # as sent upstream (rewritten)
    host: str | None  # the Host sent upstream when the route replaces it
    auth: str  # none, api_key or jwt, and whom it admits
    rate_limit: str  # "" when none
    timeouts: dict[str, float]  # the route's overrides of the services' timeouts


class Explanation(msgspec.Struct, frozen=True):
    node: str
    role: str
    at: float  # wall-clock time of the answer
    method: str
    host: str
    target: str
    routes: list[Verdict]  # Route documents only; empty without any
    chosen: Chosen | None
    error: str  # why the request goes nowhere (the 404 or 400 it would get), else ""
    destinations: list[Destination]
    revisions: dict[str, int]  # every policy applied on the node, by key
    status: int = 0  # the node's own answer when the request goes nowhere; 0: forwarded
    flags: str = ""  # that answer's x-mesh-flags (NR, DPE...)


class Problem(msgspec.Struct, frozen=True):
    """The answer to a question that could not be read."""

    node: str
    error: str
