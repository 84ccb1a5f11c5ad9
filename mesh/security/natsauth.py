"""Least-privilege NATS users: what each role may publish and subscribe, as server config."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mesh import subjects

_HB, _LOAD, _LEAVE, _EVIDENCE, _EVENTS = (
    f"{subjects.PREFIX}.{f}" for f in ("hb", "load", "leave", "evidence", "events")
)
_POLICIES = f"KV_{subjects.POLICY_BUCKET}"
# A node's answers to policy revisions: their subject names the policy, not the node.
_ACKS = (f"{_EVENTS}.policy.applied.>", f"{_EVENTS}.policy.rejected.>")
# Replies to our own requests (JetStream API answers, consumer deliveries) arrive here.
_INBOX = "_INBOX.>"


@dataclass(frozen=True, slots=True)
class Role:
    """One NATS user: `name` labels its files; the server knows it by its NKey."""

    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False  # may answer the requests it receives (CA signer, explain)
    own_events: bool = False  # may publish its own service's events only (events_scope=own)
    account: str = subjects.MESH_ACCOUNT  # the NATS account its user belongs to


def _read_stream(stream: str) -> tuple[str, ...]:
    """The JetStream API calls that read a stream through an ordered consumer (nats-py)."""
    return (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",  # flow-control answers
    )


def _read_keys(stream: str) -> tuple[str, ...]:
    """Reading single keys and their history (`mesh policy get/history`)."""
    return (
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    )


# `mesh explain` asks on these; a node answers on its service's subjects only (and a
# gateway also on the bare one), so no node can answer in another's name.
_ASK_EXPLAIN = (subjects.EXPLAIN, f"{subjects.EXPLAIN}.>")


def _hears_explain(service: str) -> tuple[str, ...]:
    return (subjects.explain(service), f"{subjects.explain(service)}.*")


# Every node hears the membership (presence's `gone` too), the evidence, sync requests
# and taps' announcements.
_NODE_HEARS = (
    subjects.HEARTBEATS,
    subjects.LEAVES,
    subjects.GONE,
    subjects.COVERAGE,
    subjects.EVIDENCE,
    subjects.SYNC,
    subjects.TAP,
    _INBOX,
)


# A node that follows services on use asks each one's nodes alone for their records; it
# answers the asks for its own service only (and everyone's, on the global subject).
_ASK_SYNC = (subjects.SYNC, f"{subjects.SYNC}.*")


def _hears_sync(service: str) -> tuple[str, ...]:
    return (subjects.sync(service),)


def _own_voice(service: str) -> tuple[str, ...]:
    """Heartbeats, load reports, leaves, evidence and tap records under its own service's
    name only.

    Tap records go out but never come back: they hold request paths, which only the
    monitor and the admin may read.
    """
    return (
        f"{_HB}.{service}.*",
        f"{_LOAD}.{service}.*",
        f"{_LEAVE}.{service}.*",
        f"{_EVIDENCE}.{service}.>",
        subjects.tapped("*", service),
    )


def agent(service: str) -> Role:
    """An agent of `service`: speaks only for it; reads policies, never writes them."""
    subjects.check_name(service)
    return Role(
        f"agent-{service}",
        publish=(
            *_own_voice(service),
            f"{_EVENTS}.*.*.{service}",  # its own service's events (events_scope=own)
            *_ACKS,
            *_ASK_SYNC,
            subjects.ca_sign(service),  # a certificate for its own identity only
            *_read_stream(_POLICIES),
        ),
        subscribe=(*_NODE_HEARS, *_hears_explain(service), *_hears_sync(service)),
        allow_responses=True,  # its answers to `mesh explain`
        own_events=True,
    )


def gateway(name: str) -> Role:
    """A gateway announcing as `name`: its own voice, every event, reads the policies and
    the event stream (its dashboard), and (with mTLS) a certificate for `name` only.

    It never creates or changes the event stream or the policy bucket: the admin does.
    """
    subjects.check_name(name)
    return Role(
        f"gateway-{name}",
        publish=(
            *_own_voice(name),
            subjects.GONE,  # it holds the presence watcher: NATS's word on any node
            subjects.COVERAGE,  # ... and says that it holds
            subjects.EVENTS,
            *_ASK_SYNC,
            subjects.ca_sign(name),  # it calls agents' inbound listeners as `name`
            *_read_stream(_POLICIES),
            *_read_stream(subjects.EVENTS_STREAM),  # its dashboard replays the latest events
        ),
        # Load reports only for its dashboard (subscribed once a reader opens it): agents
        # never hear them.
        subscribe=(
            *_NODE_HEARS,
            subjects.LOADS,
            subjects.EXPLAIN,
            *_hears_explain(name),
            *_hears_sync(name),
        ),
        allow_responses=True,  # its answers to `mesh explain`
    )


def monitor() -> Role:
    """Dashboards, `mesh members`, `events tail`, `explain`, `tap` and
    `policy list/get/history`."""
    return Role(
        "monitor",
        # A sync only makes every node heartbeat now (coalesced): the census needs it.
        # A tap's announcement makes the nodes send it request records (capped per node).
        publish=(
            subjects.SYNC,
            *_ASK_EXPLAIN,  # a question only: nodes answer what their state already says
            subjects.TAP,
            *_read_stream(subjects.EVENTS_STREAM),
            *_read_stream(_POLICIES),
            *_read_keys(_POLICIES),
        ),
        subscribe=(
            subjects.HEARTBEATS,
            subjects.LOADS,  # `mesh top`
            subjects.LEAVES,
            subjects.EVIDENCE,
            subjects.EVENTS,
            subjects.TAPPED,
            _INBOX,
        ),
    )


def admin() -> Role:
    """The policy admin and operator: the only role that writes policies or streams."""
    return Role("admin", publish=(">",), subscribe=(">",))


def presence() -> Role:
    """The presence watcher's login (held by the gateways): in the system account, it
    hears the server's connects and disconnects of the mesh's clients, and asks the
    servers how soon they close a silent one; nothing else.
    What it learns it republishes as `gone` over its holder's own login."""
    return Role(
        "presence",
        publish=(subjects.SERVER_SETTINGS,),  # how soon the servers close a silent client
        subscribe=(
            *(subjects.connections(subjects.MESH_ACCOUNT, w) for w in ("CONNECT", "DISCONNECT")),
            _INBOX,  # the servers' answers
        ),
        account=subjects.SYSTEM_ACCOUNT,
    )


def ca() -> Role:
    """The certificate signer: hears requests for every service and answers them."""
    return Role("ca", publish=(), subscribe=(subjects.CA_SIGN,), allow_responses=True)


# Server settings for presence: a hung or vanished client is closed within 3 s of its
# last sign of life (a ping every 0.75 s; 2 unanswered, after up to one skipped while the
# client was busy: 0.75 x 4), no later than the lan preset's suspicion, so a watcher's word
# covers silence as well as closes and agents may beat slowly (see deploy/nats/nats.conf).
PINGS = 'ping_interval: "750ms"\nping_max: 2\n'


def authorization(
    users: list[tuple[Role, dict[str, str]]], *, no_auth_user: str | None = None
) -> str:
    """The server's accounts for (role, login) pairs; a login is `{"nkey": public_key}`
    (what `mesh nats creds` writes) or `{"user": .., "password": ..}`.

    Each role's user goes into its role's account: the mesh's (JetStream on), or the
    system account, whose users hear the server's advisories (presence). The global
    account would hear none. With `no_auth_user`, clients that log in with nothing are
    that user (the plain demo server). Written as JSON, which nats-server reads: every
    subject is quoted, so `$JS...` is never taken for a variable.
    """
    lines = [
        "# Generated by natsmesh: one user per role, each in its role's account.",
        "accounts {",
    ]
    for account in (subjects.MESH_ACCOUNT, subjects.SYSTEM_ACCOUNT):
        lines.append(f"  {account} {{")
        if account == subjects.MESH_ACCOUNT:
            lines.append("    jetstream: enabled")
        lines.append("    users = [")
        for role, login in users:
            if role.account == account:
                lines.append(f"      # {role.name}")
                lines.append(f"      {json.dumps({**login, 'permissions': _permissions(role)})}")
        lines += ["    ]", "  }"]
    lines += ["}", f"system_account: {subjects.SYSTEM_ACCOUNT}"]
    if no_auth_user is not None:
        lines.append(f"no_auth_user: {json.dumps(no_auth_user)}")
    return "\n".join([*lines, ""])


def _permissions(role: Role) -> dict[str, object]:
    permissions: dict[str, object] = {
        "publish": {"allow": list(role.publish)} if role.publish else {"deny": [">"]},
        "subscribe": {"allow": list(role.subscribe)},
    }
    if role.allow_responses:
        permissions["allow_responses"] = True
    return permissions
