"""When each message reached a NATS socket, stamped by a small process of its own.

    python -m bench.arrivals <control fd> <output file>     (started by Arrivals)

A process hands it a duplicate of each NATS socket it wants watched (SCM_RIGHTS over a
socketpair). On each arrival (an edge-triggered epoll) it peeks at the unread bytes and
stamps every mark (bench/marks.py) it sees for the first time: the time is taken after
the peek, so it is never before the message arrived. It reads nothing, so the socket's
owner still reads every byte; and it runs at a real-time priority where the system
allows it, so a stamp does not wait for a busy loop, for the GIL, or for the CPU that
the processes it watches compete for. A message its owner read before the stamper
looked is not stamped here: the owner notes its own reads (`noting_reads`), and the
earlier sighting is taken. On `dump` it writes its stamps (JSON: name -> mark -> wall
seconds, and its scheduling) to the output file and exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.marks import note
from mesh import clock

_DUMP = b"dump"
_PEEK = 65536  # unread bytes looked at per arrival: a revision or an ack is far smaller


class Arrivals:
    """The watched process's side: start the stamper, hand it sockets, collect the stamps."""

    def __init__(self, output: Path) -> None:
        self._output = output
        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bench.arrivals", str(theirs.fileno()), str(output)],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()

    def watch(self, name: str, fd: int) -> None:
        socket.send_fds(self._ours, [name.encode()], [fd])

    def collect(self, timeout: float = 5.0) -> dict[str, Any]:
        """{"scheduling": ..., "marks": {name: {mark: wall seconds}}}."""
        self._ours.send(_DUMP)
        self._child.wait(timeout)
        self._ours.close()
        stamps: dict[str, Any] = json.loads(self._output.read_text())
        return stamps


# Stampers go ahead of everything, the NATS server (bench.propagation) included: a
# stamp waiting for a core would count the wait as the step before it.
STAMPER_PRIORITY = 2


def real_time(pid: int = 0, priority: int = STAMPER_PRIORITY) -> str:
    """Run process `pid` (0: this one), every thread of it, ahead of every ordinary
    process and of real-time ones of a lower `priority`, where allowed; say which."""
    tasks = [0] if pid == 0 else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    try:
        for task in tasks:
            os.sched_setscheduler(task, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return "normal (no permission for SCHED_FIFO: it may wait for a core)"
    return f"SCHED_FIFO {priority}"


def stamp(control: socket.socket, output: Path, scheduling: str = "normal") -> None:
    """The stamper's loop: register what comes on `control`, stamp what arrives."""
    epoll = select.epoll()
    epoll.register(control.fileno(), select.EPOLLIN)
    names: dict[int, str] = {}
    held: dict[int, socket.socket] = {}  # the duplicates stay open as long as we watch them
    seen: dict[str, dict[str, float]] = {}
    while True:
        events = epoll.poll()
        for fd, _ in events:  # stamps first: a dump in the same batch comes after them
            if fd in names:
                try:
                    data = held[fd].recv(_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except OSError:  # read already (BlockingIOError) or closed: nothing to see
                    continue
                note(seen[names[fd]], data, clock.wall())
        if not any(fd == control.fileno() for fd, _ in events):
            continue
        message, fds, _, _ = socket.recv_fds(control, 256, 1)
        if message == _DUMP or not message:
            output.write_text(json.dumps({"scheduling": scheduling, "marks": seen}))
            return
        held[fds[0]] = socket.socket(fileno=fds[0])
        names[fds[0]] = message.decode()
        seen.setdefault(names[fds[0]], {})  # a reconnected node: the same marks
        # Data already waiting is reported at once: stamped on the next poll.
        epoll.register(fds[0], select.EPOLLIN | select.EPOLLET)


if __name__ == "__main__":
    # A stop signal reaches the watched process's whole group: the stamper waits for its
    # dump (or its end) instead, else the stamps are lost.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    got = real_time()
    stamp(socket.socket(fileno=int(sys.argv[1])), Path(sys.argv[2]), got)
