"""One HAProxy configuration's instructions per request, counted by callgrind over real requests."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from bench.callgrind import counting, parse, under_callgrind
from bench.console import BenchError, say
from bench.cores import pinned
from bench.loopback import http_get, wait_until
from bench.processes import Processes
from bench.targets import PATHS, SMALL_BODY
from mesh.node.children import stop

_CONNECTIONS = 4  # keep-alive connections the requests take turns on
_STARTUP = 60.0  # seconds HAProxy gets to answer under valgrind, which starts slowly


@dataclass(frozen=True, slots=True)
class Row:
    """One configuration's figures per request: instructions with glibc's copies left
    out, the copies' own (bench.callgrind.COPIES), and log lines sent."""

    name: str
    instructions: float
    copies: float
    log_lines: float


@dataclass(frozen=True, slots=True)
class Tools:
    haproxy: str
    valgrind: str
    callgrind_control: str


class LogSocket:
    """The datagram socket the rendered configuration logs to, bound by the bench so its
    lines are sent and read as the gateway's would be; counts them."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._open = True
        self._reader = threading.Thread(target=self._read, name="log-socket", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._open:
            try:
                self._sock.recv(65536)
            except TimeoutError:
                continue
            self.lines += 1

    def close(self) -> None:
        self._open = False
        self._reader.join()
        self._sock.close()


def send(port: int, count: int) -> None:
    """`count` GETs of the small answer over a few keep-alive connections, each checked."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(_CONNECTIONS)]
    try:
        for n in range(count):
            conn = conns[n % _CONNECTIONS]
            conn.request("GET", PATHS["small"])
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or body != SMALL_BODY or response.will_close:
                raise BenchError(f"request {n}: {response.status} {body[:300]!r}")
    finally:
        for conn in conns:
            conn.close()


def check(haproxy: str, config: Path) -> None:
    """`haproxy -c`: a configuration HAProxy refuses stops the bench with its reasons."""
    done = subprocess.run(
        [haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"haproxy -c refuses {config}: {done.stdout}{done.stderr}".strip())


def count(
    name: str,
    stem: str,
    text: str,
    port: int,
    *,
    tools: Tools,
    cpus: str,
    procs: Processes,
    log: LogSocket,
    requests: int,
    warmup: int,
) -> Row:
    """`text` (listening on `port`) under callgrind, counting over `requests` requests only:
    not its start, not the `warmup` ones before, not its stop; its files are named `stem`."""
    config = procs.logdir / f"{stem}.cfg"
    config.write_text(text)
    check(tools.haproxy, config)
    out = config.with_suffix(".callgrind")
    command = under_callgrind([tools.haproxy, "-db", "-f", str(config)], tools.valgrind, out)
    child = procs.start(f"callgrind-{stem}", pinned(command, cpus))
    try:
        wait_until(
            f"{name} under callgrind to answer",
            lambda: http_get(port, PATHS["small"]) == (200, SMALL_BODY),
            timeout=_STARTUP,
            processes=procs,
        )
        send(port, warmup)
        before = log.lines
        with counting(tools.callgrind_control, child.pid):
            send(port, requests)
        logged = log.lines - before
    finally:
        stop([[child]], grace=_STARTUP)  # callgrind writes its file as HAProxy exits
        procs.children.remove(child)
    if not out.exists():
        raise BenchError(f"{name}: callgrind wrote no {out.name}:\n{child.tail(2000)}")
    counts = parse(out.read_text())
    row = Row(name, counts.without_copies / requests, counts.copies / requests, logged / requests)
    say(f"{name}: {row.instructions / 1000:,.1f}k instructions a request")
    return row
