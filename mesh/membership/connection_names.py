"""Connection names that say which node, and which incarnation of it, a connection is."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesh import subjects
from mesh.messages import Heartbeat

_ROLES = frozenset({"agent", "gateway"})
_INCARNATION = re.compile(r"[0-9]{1,20}")  # ASCII only: int() takes other digits too


def connection_name(record: Heartbeat) -> str:
    """A node's NATS connection name, which the server repeats in its advisories: role,
    service, instance and incarnation (`:` is in no name, so it splits back exactly)."""
    return f"{record.role}:{record.service}:{record.instance}:{record.incarnation}"


@dataclass(frozen=True, slots=True)
class Named:
    """Whom a connection name claims to be: a claim, which each view checks."""

    service: str
    instance: str
    incarnation: int


def named(name: str) -> Named | None:
    """The node a connection name claims, or None when it is no mesh node's name (a CLI,
    a monitor, another client of the account)."""
    parts = name.split(":")
    if len(parts) != 4 or parts[0] not in _ROLES or not _INCARNATION.fullmatch(parts[3]):
        return None
    _, service, instance, incarnation = parts
    if not (subjects.is_valid_name(service) and subjects.is_valid_name(instance)):
        return None
    return Named(service, instance, int(incarnation))
