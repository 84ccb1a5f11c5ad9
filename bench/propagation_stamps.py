"""bench.propagation's stamps: the fleets' and the collector's, matched to each answer."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.arrivals import Arrivals
from bench.console import BenchError
from bench.marks import event_mark, first_seen, kv_mark, note_reads, socket_fd, transport_of
from bench.propagation_run import Apply
from bench.propagation_split import find_stamp, split
from mesh.bus import NatsBus
from mesh.subjects import POLICY_BUCKET


@dataclass
class Heard:
    """When each message was first on the collector's socket: its reads, its stamper."""

    arrivals: Arrivals
    reads: dict[str, float] = field(default_factory=dict)
    stamped: dict[str, float] = field(default_factory=dict)
    scheduling: str = ""
    receive_buffer: int = 0  # bytes the kernel holds for the collector's socket
    loop_scheduling: str = "normal"  # the collector's own, as the stampers say theirs
    gateways_scheduling: str = "normal"

    @classmethod
    def watching(cls, bus: NatsBus, output: Path) -> Heard:
        transport = transport_of(bus.client)
        heard = cls(Arrivals(output))
        fd = socket_fd(transport)
        heard.receive_buffer = roomy(fd)
        heard.arrivals.watch("collector", fd)
        note_reads(transport._io_reader, heard.reads)
        return heard

    def collect(self) -> None:
        stamped = self.arrivals.collect()
        self.stamped, self.scheduling = stamped["marks"]["collector"], stamped["scheduling"]


# A thousand acknowledgements a second apply are some 400 KB. With loopback's default
# receive buffer (128 KB until autotuning grows it), a collector that falls behind
# leaves the rest in the server's buffers, and their wait would count as the ack path's
# (the system's) instead of the collector's own.
RECEIVE_BUFFER = 16 << 20


def roomy(fd: int) -> int:
    """Give socket `fd` a RECEIVE_BUFFER (beyond net.core.rmem_max where allowed: root);
    the size the kernel granted (it doubles what is asked, for its bookkeeping)."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        sock.close()


SO_RCVBUFFORCE = 33  # Linux: SO_RCVBUF past rmem_max, for CAP_NET_ADMIN (not in `socket`)


def read_stamps(logdir: Path, fleets: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Every fleet node's stamps, reads and writes, with its socket's stamper's marks; and
    each stamper's scheduling."""
    nodes: dict[str, Any] = {}
    scheduling = []
    for fleet in fleets:
        path = logdir / f"{fleet}.stamps.json"
        if not path.exists():
            raise BenchError(f"{fleet} left no stamps (killed before it could write {path})")
        written = json.loads(path.read_text())
        stamped = written["arrivals"]
        scheduling.append(f"{fleet}: {stamped['scheduling']}")
        for node, seen in written["nodes"].items():
            nodes[node] = {**seen, "stamped": stamped["marks"].get(node, {})}
    return nodes, scheduling


def sighting(stamped: float | None, read: float | None) -> str:
    """Who saw a message first on its socket: the stamper, the owner's read, or nobody."""
    if stamped is None and read is None:
        return "none"
    return "stamper" if read is None or (stamped is not None and stamped <= read) else "read"


def answers(
    applies: list[Apply], nodes: dict[str, Any], heard: Heard
) -> tuple[list[Any], dict[str, dict[str, int]]]:
    """Each apply's split per node, and who saw each step first: of a fleet answer's
    revision on its node's socket (`arrival`) and of every answer on the collector's
    (`heard`), the stamper or the reader, or nobody; and how many had no stamp at all or
    no acknowledgement's write (each step nobody saw counted as the system's)."""
    out = []
    seen: dict[str, dict[str, int]] = {"arrival": {}, "heard": {}, "missing": {}}

    def count(what: str, how: str) -> None:
        seen[what][how] = seen[what].get(how, 0) + 1

    for apply in applies:
        key, revision = next(iter(apply.revisions.items()))
        parts = {}
        for node, received in apply.received.items():
            ack = event_mark(f"policy.applied:{key}:{revision}:{node}")
            stamped, read = heard.stamped.get(ack), heard.reads.get(ack)
            count("heard", sighting(stamped, read))
            stamp, own = None, nodes.get(node)
            if own is not None:
                found = find_stamp(own["stamps"], key, revision)
                if found is None:
                    count("missing", "stamp")
                else:
                    mark = kv_mark(POLICY_BUCKET, revision)
                    on_socket, read_at = own["stamped"].get(mark), own["reads"].get(mark)
                    count("arrival", sighting(on_socket, read_at))
                    stamp = {
                        **found,
                        "arrived": first_seen(on_socket, read_at),
                        "written": own["writes"].get(ack),
                    }
                    if stamp["written"] is None:
                        count("missing", "write")
            parts[node] = split(apply.written, received, first_seen(stamped, read), stamp)
        out.append(parts)
    return out, seen
