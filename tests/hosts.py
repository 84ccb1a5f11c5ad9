"""Hosts as network namespaces on a private bridge: run processes in them, cut and heal links.

Each host is a namespace with loopback up and one veth link (`eth0`) to a bridge that lives
in a namespace of its own, never in the root one. Addresses come from NETWORK, which exists
only inside those namespaces: this process never sends a packet to it. It reaches a host's
own loopback instead (admin ports), through a socket opened inside that namespace.
Namespace names carry PREFIX and our pid, so parallel runs never collide, and a run finds
and removes the leftovers of runs that died before they could clean up.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.node.children import Child, stop

PREFIX = "natsmesh-h"
# A private block that neither Docker (172.17/16), nor common LANs (10.0, 10.1, 192.168)
# nor cloud VPC defaults tend to use: it exists only inside our namespaces anyway.
NETWORK = "10.214.0"
_CLONE_NEWNET = 0x40000000
_OURS = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")
# Namespaces this process made and has not deleted yet: a sweep leaves them alone (one
# left under our own pid by a dead run whose pid we now have is swept all the same).
_LIVE: set[str] = set()


class Unavailable(RuntimeError):
    """Namespaces cannot be made here; the message names what failed (for pytest.skip)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep() -> list[str]:
    """Delete namespaces of ours left by runs whose process is gone (and kill what runs in
    them); returns their names."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    swept = []
    for line in listed.stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = _OURS.match(name)
        if match is None or name in _LIVE:
            continue
        if int(match.group(1)) != os.getpid() and _pid_alive(int(match.group(1))):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(RuntimeError):
            _ip("netns", "del", name)
            swept.append(name)
    return swept


def check_available() -> None:
    """Raise Unavailable unless this process can make namespaces, veths and bridges."""
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root (euid is not 0)")
    if shutil.which("ip") is None:
        raise Unavailable("no `ip` command (iproute2) on PATH")
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        raise Unavailable(f"`ip netns add` refused: {exc}") from None
    try:
        _ip("-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except RuntimeError as exc:
        raise Unavailable(f"veth or bridge refused: {exc}") from None
    finally:
        _ip("netns", "del", probe)


class Host:
    """One namespace: an address on the test network and the processes started in it."""

    def __init__(self, name: str, namespace: str, address: str, workdir: Path) -> None:
        self.name = name
        self.namespace = namespace
        self.address = address
        self.workdir = workdir
        self.procs: list[Child] = []

    def start(self, label: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Run `argv` in this host; its output goes to <workdir>/<label>.log."""
        child = Child(
            label,
            ["ip", "netns", "exec", self.namespace, *argv],
            env={**os.environ, **(env or {})},
            log=self.workdir / f"{label}.log",
            own_session=True,  # a process group of its own: killed with whatever it spawned
        )
        child.start()
        self.procs.append(child)
        return child

    def partition(self) -> None:
        """Take the host's link down, as a pulled cable: nothing in or out but loopback."""
        _ip("-n", self.namespace, "link", "set", "eth0", "down")

    def heal(self) -> None:
        """Bring the link back; the address and the route stay across the cut."""
        _ip("-n", self.namespace, "link", "set", "eth0", "up")

    def connect(self, port: int, timeout: float = 2.0) -> socket.socket:
        """A TCP socket to 127.0.0.1:`port` of this host (a socket stays in the namespace it
        was made in: a thread of ours enters the host's to make it)."""
        made: list[socket.socket | BaseException] = []

        def inside() -> None:
            try:
                with open(f"/run/netns/{self.namespace}") as netns:
                    if ctypes.CDLL(None, use_errno=True).setns(netns.fileno(), _CLONE_NEWNET):
                        raise OSError(ctypes.get_errno(), "setns failed")
                made.append(socket.create_connection(("127.0.0.1", port), timeout))
            except BaseException as exc:
                made.append(exc)

        thread = threading.Thread(target=inside)  # it ends in the namespace: never reused
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    def get_json(self, port: int, path: str, timeout: float = 2.0) -> Any:
        """GET a JSON page from this host's loopback (an admin port)."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.sock = self.connect(port, timeout)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self) -> None:
        stop([self.procs], grace=0.0, first=signal.SIGKILL)


class Hosts:
    """N hosts on one bridge; `close()` kills their processes and deletes every namespace.

    Use as a context manager: the namespaces go even when the block fails.
    """

    def __init__(self, names: Sequence[str], workdir: Path) -> None:
        self.tag = f"{PREFIX}{os.getpid()}-"
        self.bridge = f"{self.tag}bridge"
        self.workdir = workdir
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        try:
            self._add_namespace(self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            for index, name in enumerate(names, start=1):
                self._add_host(index, name)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._made.append(namespace)
        _LIVE.add(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def _add_host(self, index: int, name: str) -> None:
        namespace = f"{self.tag}{name}"
        address = f"{NETWORK}.{index + 10}"
        self._add_namespace(namespace)
        port = f"port{index}"  # the bridge's end, in the bridge's namespace
        _ip(
            "-n",
            self.bridge,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            namespace,
        )
        _ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[name] = Host(name, namespace, address, self.workdir)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()
        for namespace in reversed(self._made):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", namespace)
            _LIVE.discard(namespace)
        self._made.clear()
