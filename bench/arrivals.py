"""When data reached each of a fleet's sockets, stamped by a small process of its own.

    python -m bench.arrivals <control fd> <output file>     (started by Arrivals)

The fleet hands it a duplicate of each node's NATS socket (SCM_RIGHTS over a socketpair).
It watches them with an edge-triggered epoll and reads nothing, so the fleet's event loop
still reads every byte; an arrival is stamped when the kernel has it, not when a busy loop
(or a thread waiting for the GIL behind it) gets to it. On `dump` it writes every socket's
arrival times (JSON: name -> wall seconds) to the output file and exits.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

from mesh import clock

_DUMP = b"dump"
_MOST = 4096  # arrivals kept per socket: enough for any run (heartbeats do not come here)


class Arrivals:
    """The fleet's side: start the stamper, hand it sockets, collect the stamps."""

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

    def collect(self, timeout: float = 5.0) -> dict[str, list[float]]:
        self._ours.send(_DUMP)
        self._child.wait(timeout)
        self._ours.close()
        stamps: dict[str, list[float]] = json.loads(self._output.read_text())
        return stamps


def stamp(control: socket.socket, output: Path) -> None:
    """The stamper's loop: register what comes on `control`, stamp what arrives."""
    epoll = select.epoll()
    epoll.register(control.fileno(), select.EPOLLIN)
    names: dict[int, str] = {}
    held: list[socket.socket] = []  # the duplicates stay open as long as we watch them
    times: dict[str, list[float]] = {}
    while True:
        events = epoll.poll()
        now = clock.wall()
        for fd, _ in events:  # stamps first: a dump in the same batch comes after them
            if fd in names and len(times[names[fd]]) < _MOST:
                times[names[fd]].append(now)
        if not any(fd == control.fileno() for fd, _ in events):
            continue
        message, fds, _, _ = socket.recv_fds(control, 256, 1)
        if message == _DUMP or not message:
            output.write_text(json.dumps(times))
            return
        held.append(socket.socket(fileno=fds[0]))
        names[fds[0]] = message.decode()
        times.setdefault(names[fds[0]], [])  # a reconnected node: the same list
        # Data already waiting is reported at once: stamped on the next poll.
        epoll.register(fds[0], select.EPOLLIN | select.EPOLLET)


if __name__ == "__main__":
    # A stop signal reaches the fleet's whole process group: the stamper waits for the
    # fleet's dump (or its end) instead, else the stamps are lost.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stamp(socket.socket(fileno=int(sys.argv[1])), Path(sys.argv[2]))
