"""mesh.node.ports: free ports never handed out twice; a taken address is named before use."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.errors import PortUnavailable
from mesh.node import ports
from mesh.node.ports import check_bindable, free_port


def test_free_ports_are_bindable_and_never_repeat() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_free_ports_lie_below_the_ephemeral_range_so_no_connect_takes_them() -> None:
    """As a process the tests start draws them (tests/conftest.py gives this one a slice
    of its own, below theirs)."""
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    drawn = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mesh.node.ports import free_port\nprint(*(free_port() for _ in range(50)))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert len(drawn) == 50
    assert all(20000 <= int(port) < start for port in drawn)


def test_a_port_someone_holds_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    held = free_port()
    monkeypatch.setattr(ports, "_GIVEN", set())  # as if another process had chosen it
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", held))
        holder.listen()
        offered: list[int] = []
        real = ports._random.randrange

        def held_first(low: int, high: int) -> int:
            offered.append(real(low, high) if offered else held)
            return offered[-1]

        monkeypatch.setattr(ports._random, "randrange", held_first)
        assert free_port() != held
        assert offered[0] == held


def test_a_free_address_passes_and_port_0_always_does() -> None:
    check_bindable(f"127.0.0.1:{free_port()}", "--listen")
    check_bindable("127.0.0.1:0", "--listen")


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_listener_already_there_is_named_with_the_flag(reuse_port: bool) -> None:
    with socket.socket() as holder:
        # A listener that set SO_REUSEPORT (someone else's) is no less there.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(PortUnavailable) as info:
            check_bindable(address, "--admin")
    assert str(info.value) == f"cannot listen on {address} (--admin): address already in use"


def test_the_demo_service_on_a_taken_port_says_so_in_one_line() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        demo = subprocess.run(
            [sys.executable, "-m", "mesh", "demo-service", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert demo.returncode == 2
    assert demo.stderr.splitlines() == [
        f"mesh demo-service: cannot listen on 127.0.0.1:{port} (--port): address already in use"
    ]
