"""What HAProxy's `show servers state`, `show stat` and `show proc` answer, read into data."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from mesh.errors import RuntimeApiError
from mesh.haproxy.layout import ServerState

# srv_admin_state bits (HAProxy's enum srv_admin): forced, inherited, config, resolver
# and health-check maintenance; forced and inherited drain.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
_OP_STATES = ("stopped", "starting", "running", "stopping")


@dataclass(frozen=True, slots=True)
class ServerRow:
    """One server as `show servers state` gives it."""

    address: str
    port: int
    op_state: str  # stopped | starting | running | stopping (its checks' verdict)
    admin_state: int  # HAProxy's bit set; `state` reads it
    weight: int  # the user weight: what `set server ... weight` last set

    @property
    def state(self) -> ServerState:
        if self.admin_state & _MAINT_BITS:
            return "maint"
        return "drain" if self.admin_state & _DRAIN_BITS else "ready"


def servers_state(answer: str) -> dict[str, dict[str, ServerRow]]:
    """backend -> server -> its row; backends without servers are absent."""
    lines = answer.splitlines()
    if not lines or lines[0].strip() != "1":
        raise RuntimeApiError(f"unexpected `show servers state` answer: {answer[:80]!r}")
    backends: dict[str, dict[str, ServerRow]] = {}
    columns: list[str] = []
    for line in lines[1:]:
        if line.startswith("# "):
            columns = line[2:].split()
            continue
        if not line.strip():
            continue
        row = dict(zip(columns, line.split(), strict=False))
        backends.setdefault(row["be_name"], {})[row["srv_name"]] = ServerRow(
            address=row["srv_addr"],
            port=int(row["srv_port"]),
            op_state=_OP_STATES[int(row["srv_op_state"])],
            admin_state=int(row["srv_admin_state"]),
            weight=int(row["srv_uweight"]),
        )
    return backends


def stat_rows(answer: str) -> list[dict[str, str]]:
    """`show stat`'s CSV: one dict per frontend, backend and server, keyed by its header
    (pxname, svname, scur, stot, hrsp_5xx...); empty fields stay empty strings."""
    if not answer.startswith("# "):
        raise RuntimeApiError(f"unexpected `show stat` answer: {answer[:80]!r}")
    reader = csv.DictReader(io.StringIO(answer[2:]))
    return [{key: value for key, value in row.items() if key} for row in reader if row]


@dataclass(frozen=True, slots=True)
class Processes:
    """`show proc` on the master socket: who serves now, and how many reloads so far."""

    master: int
    reloads: int
    failed_reloads: int
    workers: tuple[int, ...]  # the current worker(s), started by the last good load
    old_workers: tuple[int, ...]  # previous ones, finishing their connections


_MASTER = re.compile(r"^(\d+)\s+master\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?", re.MULTILINE)


def processes(answer: str) -> Processes:
    found = _MASTER.search(answer)
    if found is None:
        raise RuntimeApiError(f"unexpected `show proc` answer: {answer[:80]!r}")
    sections: dict[str, list[int]] = {"workers": [], "old workers": []}
    section = ""
    for line in answer.splitlines():
        if line.startswith("#"):
            section = line[1:].strip()
        elif section in sections and line.split():
            sections[section].append(int(line.split()[0]))
    return Processes(
        master=int(found[1]),
        reloads=int(found[2]),
        failed_reloads=int(found[3] or 0),
        workers=tuple(sections["workers"]),
        old_workers=tuple(sections["old workers"]),
    )
