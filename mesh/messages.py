"""Every wire message: msgspec structs encoded as JSON, one union tagged by `type`.

Decoding is strict about types and ranges and checks the message against its subject,
so an agent allowed to publish only its own subjects cannot speak for another
instance. Unknown fields are tolerated: additive changes stay within `v1`; anything
else gets a new subject version.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mesh import subjects
from mesh.errors import InvalidMessage

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
]


class Load(msgspec.Struct, frozen=True, kw_only=True):
    """What an instance reports about its own recent traffic."""

    inflight: Count = 0
    rps: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0


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
    load: Load = Load()
    # The agent's inbound listener (mTLS in front of the service): callers that know it
    # dial it instead of `port`. None: no inbound listener (or an agent that predates it).
    inbound_port: Port | None = None


class Leave(msgspec.Struct, frozen=True, kw_only=True, tag="leave", tag_field="type"):
    """A node is going away on purpose: stop sending it new requests."""

    service: Name
    instance: Name
    incarnation: Count
    seq: Count
    reason: LeaveReason = "shutdown"


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


Message = Heartbeat | Leave | Sync | Evidence | Event

_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()

# Which message type may travel on which subject family (the token after `mesh.v1`).
_FAMILY: dict[str, type[Message]] = {
    "hb": Heartbeat,
    "leave": Leave,
    "evidence": Evidence,
    "sync": Sync,
    "events": Event,
}


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(subject: str, data: bytes) -> Message:
    """Decode `data` received on `subject`, or raise InvalidMessage saying why."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(subject, f"{len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        message = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise InvalidMessage(subject, str(exc)) from None
    family = subject.split(".")[2] if subject.count(".") >= 2 else ""
    expected = _FAMILY.get(family)
    if expected is not None and not isinstance(message, expected):
        raise InvalidMessage(subject, f"a {type(message).__name__} on a {family} subject")
    named = subjects.owner(subject)
    if (
        (named is not None or expected is not None)
        and isinstance(message, Heartbeat | Leave | Evidence)
        and named != (message.service, message.instance)
    ):
        # On a per-instance family, a subject naming no instance (too few or too many
        # tokens) vouches for none: `mesh.v1.hb.orders.i1.x` must not speak for billing.
        said = f"{message.service}/{message.instance}"
        where = "none" if named is None else f"{named[0]}/{named[1]}"
        raise InvalidMessage(subject, f"names {said}, its subject {where}")
    if isinstance(message, Evidence) and message.reporter != subjects.reporter(subject):
        raise InvalidMessage(subject, f"reported by {message.reporter}, its subject names another")
    if isinstance(message, Event) and subject != subjects.event(message.kind, message.service):
        raise InvalidMessage(subject, f"a {message.kind} event of {message.service} on it")
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
