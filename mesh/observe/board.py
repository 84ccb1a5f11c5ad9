"""The dashboard's board: every service with its golden signals and instances, as one node sees
them (mesh.observe.traffic computes both from the nodes' load reports)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from mesh.membership.view import Member
from mesh.observe import traffic


class Service(msgspec.Struct, frozen=True):
    name: str
    states: dict[str, int]  # its instances by state
    signals: traffic.Signals
    instances: list[traffic.InstanceRow]


class Board(msgspec.Struct, frozen=True):
    node: str  # whose view this is
    at: float  # wall clock, seconds
    services: list[Service]


def board(node: str, members: Iterable[Member], loads: traffic.Loads, *, wall: float) -> Board:
    everyone = list(members)
    return Board(
        node=node,
        at=wall,
        services=[
            Service(
                name=row.service,
                states=row.states,
                signals=row.signals,
                instances=traffic.instances(everyone, loads, row.service),
            )
            for row in traffic.services(everyone, loads)
        ],
    )
