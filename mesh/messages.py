"""Every wire message: msgspec structs encoded as JSON, one union tagged by `type`.

Decoding is strict about types and ranges and checks the message against its subject,
so an agent allowed to publish only its own subjects cannot speak for another
instance. Unknown fields are tolerated: additive changes stay within `v1`; anything
else gets a new subject version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from mesh import subjects
from mesh.errors import InvalidMessage

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024

# `\Z`, not `$`: msgspec matches with re.search, and `$` also matches before a final
# newline, which would let "orders\n" through as a name (a subject/protocol injection).
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}\Z")]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Host = Annotated[
    str, msgspec.Meta(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_\[\]-]+\Z")
]
Label = Annotated[str, msgspec.Meta(max_length=128)]
MetaKey = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_./-]{1,63}\Z")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
Weight = Annotated[int, msgspec.Meta(ge=1, le=10_000)]

Role = Literal["agent", "gateway"]
Health = Literal["passing", "failing"]
LeaveReason = Literal["shutdown", "drain"]
Signal = Literal["refused", "reset", "timeout", "5xx"]
EventKind = Literal[
    "instance.up",
    "instance.suspect",
    "instance.down",
    "instance.left",
    "instance.draining",
    "instance.restarted",
    "instance.ejected",
    "instance.restored",
    "health.failing",
    "health.passing",
    "policy.applied",
    "policy.rejected",
    "dataplane.restarted",
]


# Caps on the traffic figures in one load report, so that a full one (the longest names,
# the largest counts) stays well under MAX_MESSAGE_BYTES; the sender keeps the busiest
# entries and counts the rest in `Load.omitted`.
MAX_LOAD_SERVICES = 16
MAX_LOAD_INSTANCES = 64  # in the whole report, across its services
# Latency bucket counts: one per bound of mesh.metrics.BUCKETS, then one above the last.
LATENCY_BUCKETS = 14
# The most a figure of one window may say. A node is one event loop: at 10^5 requests a
# second, more than one Python process forwards, the longest window the wire carries (an
# hour) holds 3.6 x 10^8 requests, and a window is about one heartbeat interval (60 s at
# most). A larger figure is no measurement (and 10^400 would overflow any float made of
# it); sums over callers of figures this size stay exact as floats.
MAX_LOAD_COUNT = 10**9
LoadCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_LOAD_COUNT)]
Latency = Annotated[list[LoadCount], msgspec.Meta(max_length=LATENCY_BUCKETS)]
# The shortest window with figures (0: none yet). Readers divide by it; a node cuts a
# window a heartbeat interval or more after the last one, never sooner than this.
MIN_LOAD_WINDOW = 0.05


class Traffic(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one node forwarded to a service or an instance during the load window."""

    requests: LoadCount = 0  # answered (or ended) in the window
    errors: LoadCount = 0  # of them: 5xx, proxy-made ones included
    inflight: LoadCount = 0  # at the end of the window
    # Counts per latency bucket (not cumulative), trailing zeros left out.
    latency: Latency = []


class InstanceTraffic(Traffic, frozen=True, kw_only=True, omit_defaults=True):
    """Attempts on one instance: retries count on the instance each try went to."""

    ejected: bool = False  # this node ejects it (outlier detection) right now


class ServiceTraffic(Traffic, frozen=True, kw_only=True, omit_defaults=True):
    """Requests to one service, whichever instance (if any) answered them."""

    instances: Annotated[
        dict[Name, InstanceTraffic], msgspec.Meta(max_length=MAX_LOAD_INSTANCES)
    ] = {}


class Load(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a node reports about traffic: what it forwarded, as a caller, per destination.

    The callers report, because an instance's own agent never sees most of the requests
    its service gets. The figures cover the last `window` seconds (0: none yet); every
    report until the next window ends repeats them.
    """

    # 0 or from MIN_LOAD_WINDOW (decode checks the gap between them).
    window: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    services: Annotated[dict[Name, ServiceTraffic], msgspec.Meta(max_length=MAX_LOAD_SERVICES)] = {}
    omitted: LoadCount = 0  # services and instances left out of `services` over the caps


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, tag="hb", tag_field="type"):
    """The full record of one node; the first one a peer sees is the announcement."""

    service: Name
    instance: Name
    role: Role = "agent"
    host: Host
    port: Port
    zone: Label = ""
    version: Label = ""
    weight: Weight = 1
    meta: Annotated[dict[MetaKey, Label], msgspec.Meta(max_length=64)] = {}
    incarnation: Count
    seq: Count
    health: Health = "passing"
    draining: bool = False
    interval: Seconds = 1.0
    admin_port: Port | None = None
    # The agent's inbound listener (mTLS in front of the service): callers that know it
    # dial it instead of `port`. None: no inbound listener (or an agent that predates it).
    inbound_port: Port | None = None


class Beat(msgspec.Struct, frozen=True, kw_only=True, tag="beat", tag_field="type"):
    """A short heartbeat, on the heartbeat subject: alive, and the record (the last
    Heartbeat of this incarnation) unchanged. Nodes send the full record when it changes,
    in answer to a sync, first after a (re)connect, and every few intervals."""

    service: Name
    instance: Name
    incarnation: Count
    seq: Count


class LoadReport(msgspec.Struct, frozen=True, kw_only=True, tag="load", tag_field="type"):
    """What a node forwarded lately, on its own subject: only watchers (`mesh top`, a
    dashboard) hear it; the nodes that route never pay for a fleet's traffic figures."""

    service: Name
    instance: Name
    incarnation: Count  # the reporting node's, so that a restart's figures start afresh
    load: Load


class Leave(msgspec.Struct, frozen=True, kw_only=True, tag="leave", tag_field="type"):
    """A node is going away on purpose: stop sending it new requests."""

    service: Name
    instance: Name
    incarnation: Count
    seq: Count
    reason: LeaveReason = "shutdown"


class Gone(msgspec.Struct, frozen=True, kw_only=True, tag="gone", tag_field="type"):
    """NATS saw this incarnation's connection close: a presence watcher passes it on.

    Evidence, not a verdict: every node checks it against its own view, and a heartbeat
    of the same incarnation afterwards outweighs it.
    """

    service: Name
    instance: Name
    incarnation: Count
    reason: Label = ""  # the server's words: "Client Closed", "Stale Connection"...
    witness: Name  # the node whose watcher heard the server say it


class Coverage(msgspec.Struct, frozen=True, kw_only=True, tag="coverage", tag_field="type"):
    """A presence watcher is listening: any node connection that dies, or stays silent
    for `closes_within` seconds (the NATS servers' ping_interval x (ping_max + 2)), is
    reported as gone. Sent every `every` seconds while it holds; nodes that hear it may
    beat more slowly, since their silence no longer has to be timed by every observer."""

    watcher: Name
    closes_within: Seconds
    every: Seconds


class Sync(msgspec.Struct, frozen=True, kw_only=True, tag="sync", tag_field="type"):
    """Asks every node to publish its heartbeat now (sent after a (re)connect)."""

    node: Name


class Evidence(msgspec.Struct, frozen=True, kw_only=True, tag="evidence", tag_field="type"):
    """An observer on the forwarding path saw an instance fail.

    `reporter` is the observer's own service; its subject must name it too, which is what
    NATS permissions check. The node that sends it fills it in.
    """

    service: Name
    instance: Name
    observer: Name
    reporter: Name | None = None
    signal: Signal
    streak: Annotated[int, msgspec.Meta(ge=1)] = 1
    # The instance's heartbeat seq the observer had heard (0: not said): nodes ejecting on
    # this evidence name their ejection event after it, as the observer does.
    seq: Count = 0


class Event(msgspec.Struct, frozen=True, kw_only=True, tag="event", tag_field="type"):
    """Something the mesh saw, for people and monitoring; `id` de-duplicates observers."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    kind: EventKind
    service: Name
    instance: Label = ""
    node: Label = ""
    at: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    detail: Annotated[dict[MetaKey, Label], msgspec.Meta(max_length=32)] = {}


class RequestRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One finished request, as the access log writes it and a tap shows it.

    Never headers or credentials; the path without its query.
    """

    time: str  # RFC 3339, UTC, milliseconds
    node: str
    request_id: str
    method: str
    authority: str
    path: str
    route: str
    service: str
    instance: str
    attempts: int
    status: int
    flags: str
    duration_ms: float
    bytes_in: int  # request body bytes received
    bytes_out: int  # response body bytes sent
    upstream_ms: float | None = None  # the last attempt's, when there was one
    consumer: str | None = None  # whom edge authentication proved, if it ran
    peer: str | None = None  # the caller's SPIFFE id, proved by mTLS (agent inbound)


StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]


class TapFilter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which requests a tap wants; every field given must match (none: all requests)."""

    service: Name | None = None
    route: Name | None = None  # a route's name (mesh.policy.route), or a built-in route's
    # Visible ASCII after a `/`, no `?`: a prefix of the path, never of the query (a path
    # beyond ASCII arrives %-encoded; matched as routing sees it, normalised).
    path_prefix: Annotated[str, msgspec.Meta(pattern=r"^/[!->@-~]{0,1023}\Z")] | None = None
    status: StatusClass | None = None
    method: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{1,32}\Z")] | None = None


# A node forgets a tap this long after its last announcement at the latest: whoever may
# announce taps can hold a node's tap slots (MESH_TAP_MAX_OPEN) no longer than this after
# they stop, and `mesh tap` announces itself every few seconds anyway.
MAX_TAP_TTL = 60.0


class TapOpen(msgspec.Struct, frozen=True, kw_only=True, tag="tap", tag_field="type"):
    """A tap announces itself (and again before `ttl` runs out), or says goodbye."""

    id: Name
    filter: TapFilter = TapFilter()
    sample: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0  # the share of matches sent
    # Forgotten this long after its last announcement.
    ttl: Annotated[float, msgspec.Meta(gt=0, le=MAX_TAP_TTL)]
    closing: bool = False  # goodbye: forget it now


class TapRecords(msgspec.Struct, frozen=True, kw_only=True, tag="tapped", tag_field="type"):
    """A node's batch of records for one tap, and how many its cap dropped since the last;
    or, `refused`, word that the node keeps as many taps open as it may and not this one
    (or, `why`, that it cannot tap requests at all)."""

    tap: Name
    node: Name
    records: list[RequestRecord] = []
    dropped: Count = 0
    refused: bool = False
    why: Label = ""  # with `refused`: "" means its taps are all taken


Message = (
    Heartbeat
    | Beat
    | LoadReport
    | Leave
    | Gone
    | Coverage
    | Sync
    | Evidence
    | Event
    | TapOpen
    | TapRecords
)

_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()

# Which message types may travel on which subject family (the token after `mesh.v1`).
_FAMILY: dict[str, type[Message] | tuple[type[Message], ...]] = {
    "hb": (Heartbeat, Beat),
    "load": LoadReport,
    "leave": Leave,
    "gone": Gone,
    "coverage": Coverage,
    "evidence": Evidence,
    "sync": Sync,
    "events": Event,
    "tap": TapOpen,
    "tapped": TapRecords,
}


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def family_of(subject: str) -> str:
    """What travels on `subject`: the token after `mesh.v1` (hb, evidence, tap...)."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) > 2 else subject


def decode_counted(subject: str, data: bytes, count: Callable[[str], None]) -> Message | None:
    """`decode`, or None for an invalid message once `count` has been given its subject's
    family (Metrics.invalid_message) and why was logged (at debug: a flood must not fill
    the log)."""
    try:
        return decode(subject, data)
    except InvalidMessage as exc:
        count(family_of(subject))
        log.debug("%s", exc)
        return None


def decode(subject: str, data: bytes) -> Message:
    """Decode `data` received on `subject`, or raise InvalidMessage saying why."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(subject, f"{len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        message = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise InvalidMessage(subject, str(exc)) from None
    family = family_of(subject)
    expected = _FAMILY.get(family)
    if expected is not None and not isinstance(message, expected):
        raise InvalidMessage(subject, f"a {type(message).__name__} on a {family} subject")
    named = subjects.owner(subject)
    if (
        (named is not None or expected is not None)
        and isinstance(message, Heartbeat | Beat | LoadReport | Leave | Gone | Evidence)
        and named != (message.service, message.instance)
    ):
        # On a per-instance family, a subject naming no instance (too few or too many
        # tokens) vouches for none: `mesh.v1.hb.orders.i1.x` must not speak for billing.
        said = f"{message.service}/{message.instance}"
        where = "none" if named is None else f"{named[0]}/{named[1]}"
        raise InvalidMessage(subject, f"names {said}, its subject {where}")
    if isinstance(message, LoadReport) and 0 < message.load.window < MIN_LOAD_WINDOW:
        window = message.load.window
        raise InvalidMessage(subject, f"load window {window} s: 0 or {MIN_LOAD_WINDOW} s or more")
    if isinstance(message, Evidence) and message.reporter != subjects.reporter(subject):
        raise InvalidMessage(subject, f"reported by {message.reporter}, its subject names another")
    if isinstance(message, Event) and subject != subjects.event(message.kind, message.service):
        raise InvalidMessage(subject, f"a {message.kind} event of {message.service} on it")
    if isinstance(message, TapRecords) and subjects.tap_of(subject) != message.tap:
        raise InvalidMessage(subject, f"records for tap {message.tap} on it")
    return message


# --- certificate requests: request/reply on mesh.v1.ca.sign.<service>, outside the union ---

Pem = Annotated[str, msgspec.Meta(max_length=16 * 1024)]


class CertRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A certificate signing request (PEM); the subject names the service it is for."""

    csr: Pem


class CertReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The signed certificate and the CA that checks peers, or why the CA refused."""

    cert: Pem = ""
    ca: Pem = ""
    error: Annotated[str, msgspec.Meta(max_length=512)] = ""
