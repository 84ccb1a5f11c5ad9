"""The view as people see it: one row per member, for the admin API and `mesh members`."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from mesh.membership.view import View


class Row(msgspec.Struct, frozen=True):
    service: str
    instance: str
    role: str
    address: str
    state: str
    health: str
    routable: bool
    zone: str
    version: str
    weight: int
    incarnation: int
    seq: int
    heard_ago: float
    # Seconds between its heartbeats: slower while a presence watcher covers it.
    interval: float
    meta: dict[str, str]
    inbound_port: int | None = None  # its agent's inbound listener (mTLS), what callers dial


def rows(view: View, now: float) -> list[Row]:
    out = []
    for m in sorted(view.members.values(), key=lambda m: (m.record.service, m.instance)):
        r = m.record
        out.append(
            Row(
                service=r.service,
                instance=r.instance,
                role=r.role,
                address=f"{r.host}:{r.port}",
                state=m.state.value,
                health=r.health,
                routable=m.routable,
                zone=r.zone,
                version=r.version,
                weight=r.weight,
                incarnation=r.incarnation,
                seq=m.seq,
                heard_ago=round(max(now - m.heard, 0.0), 3),
                interval=r.interval,
                meta=dict(r.meta),
                inbound_port=r.inbound_port,
            )
        )
    return out


def to_json(view: View, now: float) -> bytes:
    return msgspec.json.encode(
        {"frozen": view.frozen_at is not None, "version": view.version, "members": rows(view, now)}
    )


# What the `*` after a state means, under any table that shows one.
NOT_ROUTABLE = (
    "\n* not routable: no new requests go there until it is alive, passes its health check"
    "\n  and is not draining (its agent's log and admin /healthz say why)"
)


def table(members: list[Row]) -> str:
    """A fixed-width table for terminals."""
    header = (
        "SERVICE",
        "INSTANCE",
        "ROLE",
        "ADDRESS",
        "STATE",
        "HEALTH",
        "ZONE",
        "VERSION",
        "AGE",
        "EVERY",
    )
    lines = [header] + [
        (
            r.service,
            r.instance,
            r.role,
            r.address,
            r.state + ("" if r.routable or r.role != "agent" else "*"),
            r.health,
            r.zone or "-",
            r.version or "-",
            f"{r.heard_ago:.1f}s",
            f"{r.interval:g}s",
        )
        for r in members
    ]
    text = columns(lines)
    if any(not r.routable and r.role == "agent" for r in members):
        text += NOT_ROUTABLE
    return text


def columns(lines: Sequence[Sequence[str]]) -> str:
    """Rows of cells as left-aligned columns two spaces apart; the first row sets the count."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
