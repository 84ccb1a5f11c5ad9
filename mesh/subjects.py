"""Every NATS subject, stream and bucket name natsmesh uses, and the name rule for them."""

from __future__ import annotations

import re

from mesh.errors import InvalidName

PREFIX = "mesh.v1"

HEARTBEATS = f"{PREFIX}.hb.>"
# mesh.v1.load.<service>.<instance>: each node's traffic figures, apart from its heartbeats
# so that only watchers (`mesh top`, dashboards) receive them.
LOADS = f"{PREFIX}.load.>"
LEAVES = f"{PREFIX}.leave.>"
# mesh.v1.gone.<service>.<instance>: NATS saw the instance's connection close (presence).
GONE = f"{PREFIX}.gone.>"
# Presence watchers say here, every second, that they hold (messages.Coverage).
COVERAGE = f"{PREFIX}.coverage"
# mesh.v1.evidence.<reporter>.<service>.<instance>: the reporter (the observer's own
# service) leads, so that NATS permissions can confine an agent to its own reports while
# it still reports on every service it calls.
EVIDENCE = f"{PREFIX}.evidence.>"
EVENTS = f"{PREFIX}.events.>"
SYNC = f"{PREFIX}.sync"
# What an observer hears of each service it follows, one subject per instance:
# mesh.v1.<kind>.<service>.<instance>. Discovery subscribes to every kind here for each
# service it wants (or for all of them with `*`).
FOLLOWED = ("hb", "leave", "gone")
# Certificate requests, one subject per service, so that NATS permissions decide which
# service's identity a process may ask the mesh CA for.
CA_SIGN = f"{PREFIX}.ca.sign.>"
# `mesh explain` asks here, and takes the first answer: every gateway hears EXPLAIN; every
# node hears its service's subject and its own (mesh.v1.explain.<service>[.<instance>]).
EXPLAIN = f"{PREFIX}.explain"
# `mesh tap`: taps announce themselves here; nodes send a tap's records to
# mesh.v1.tapped.<tap>.<service>, the sender's service last so that NATS permissions can
# confine a node to its own (and keep every other role from reading request paths).
TAP = f"{PREFIX}.tap"
TAPPED = f"{PREFIX}.tapped.>"

# The NATS accounts of a server configured for presence: the mesh's own, and the system
# account whose users hear the server's advisories about the mesh's connections.
MESH_ACCOUNT = "MESH"
SYSTEM_ACCOUNT = "SYS"

EVENTS_STREAM = "MESH_EVENTS"
POLICY_BUCKET = "mesh_policies"
POLICY_HISTORY = 64  # revisions kept per policy: how far back a rollback can go

_PER_INSTANCE = frozenset({*FOLLOWED, "load"})
_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_name(name: str) -> str:
    """Return `name` if it can be one subject token, else raise InvalidName."""
    if not _NAME.fullmatch(name):
        raise InvalidName(name)
    return name


def is_valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def heartbeat(service: str, instance: str) -> str:
    return f"{PREFIX}.hb.{check_name(service)}.{check_name(instance)}"


def load(service: str, instance: str) -> str:
    return f"{PREFIX}.load.{check_name(service)}.{check_name(instance)}"


def leave(service: str, instance: str) -> str:
    return f"{PREFIX}.leave.{check_name(service)}.{check_name(instance)}"


def gone(service: str, instance: str) -> str:
    return f"{PREFIX}.gone.{check_name(service)}.{check_name(instance)}"


def connections(account: str, what: str) -> str:
    """Where the system account hears `account`'s clients CONNECT or DISCONNECT."""
    return f"$SYS.ACCOUNT.{check_name(account)}.{what}"


# Every NATS server of a cluster answers this with its settings (ping_interval among
# them), to system-account users.
SERVER_SETTINGS = "$SYS.REQ.SERVER.PING.VARZ"


def sync(service: str) -> str:
    """Where the nodes of `service` alone are asked for their records (SYNC asks everyone)."""
    return f"{SYNC}.{check_name(service)}"


def following(service: str) -> list[str]:
    """The subscriptions that hear `service`'s members (`*`: every service's)."""
    token = service if service == "*" else check_name(service)
    return [f"{PREFIX}.{kind}.{token}.>" for kind in FOLLOWED]


def evidence_about(service: str) -> str:
    """The subscription that hears every reporter's evidence on `service` (`*`: on all)."""
    token = service if service == "*" else check_name(service)
    return f"{PREFIX}.evidence.*.{token}.>"


def evidence(reporter: str, service: str, instance: str) -> str:
    """What `reporter`'s nodes saw of `service`'s `instance`."""
    return f"{PREFIX}.evidence.{check_name(reporter)}.{check_name(service)}.{check_name(instance)}"


def ca_sign(service: str) -> str:
    return f"{PREFIX}.ca.sign.{check_name(service)}"


def explain(service: str, instance: str = "") -> str:
    """Where nodes of `service` (or its `instance` alone) hear `mesh explain`."""
    to = f"{EXPLAIN}.{check_name(service)}"
    return f"{to}.{check_name(instance)}" if instance else to


def tapped(tap: str, service: str) -> str:
    """Where `service`'s nodes send a tap's records; either may be `*` (a subscription)."""
    tap = tap if tap == "*" else check_name(tap)
    return f"{PREFIX}.tapped.{tap}.{service if service == '*' else check_name(service)}"


def tap_of(subject: str) -> str | None:
    """The tap a records subject names, else None."""
    parts = subject.split(".")
    if len(parts) == 5 and ".".join(parts[:3]) == f"{PREFIX}.tapped":
        return parts[3]
    return None


def event(kind: str, service: str) -> str:
    """`kind` is dotted (`instance.up`); each of its parts must be a valid name."""
    for part in kind.split("."):
        check_name(part)
    return f"{PREFIX}.events.{kind}.{check_name(service)}"


def owner(subject: str) -> tuple[str, str] | None:
    """(service, instance) named by a per-instance subject (hb, load, leave, gone,
    evidence), else None."""
    parts = subject.split(".")
    if len(parts) == 5 and ".".join(parts[:2]) == PREFIX and parts[2] in _PER_INSTANCE:
        return parts[3], parts[4]
    if reporter(subject) is not None:
        return parts[4], parts[5]
    return None


def reporter(subject: str) -> str | None:
    """The reporting service an evidence subject names, else None."""
    parts = subject.split(".")
    if len(parts) == 6 and ".".join(parts[:2]) == PREFIX and parts[2] == "evidence":
        return parts[3]
    return None
