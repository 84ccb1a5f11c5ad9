"""`mesh up` as a user runs it: a subprocess, curl through the gateway, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mesh_procs import Client, alive

from mesh.node.ports import free_port

pytestmark = pytest.mark.e2e


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_mesh_up_serves_three_instances_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesh",
            "up",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # a process group of its own, as a terminal's job has
    )
    try:
        banner = b""
        deadline = time.monotonic() + 60
        assert up.stdout is not None
        while b"Ctrl-C stops everything" not in banner:
            line = up.stdout.readline()
            assert line, f"mesh up ended early:\n{(tmp_path / 'up.log').read_text()}"
            banner += line
            assert time.monotonic() < deadline, banner.decode()
        text = banner.decode()
        assert f"curl http://127.0.0.1:{port}/hello/" in text
        assert "7 policy documents applied from" in text  # the examples
        children = descendants(up.pid)
        assert len(children) >= 10  # nats-server, gateway (+workers), 4 services, 4 agents

        client = Client(port)
        instances = set()
        # least_request breaks ties at random when requests go one at a time: 9 requests
        # miss an instance about 8% of the time, 60 only once in 10^10 runs.
        for _ in range(60):
            status, _, body = client.request("GET", "/hello/")
            assert status == 200
            instances.add(json.loads(body)["instance"])
        client.close()
        assert instances == {"hello-1", "hello-2", "hello-3"}
        # The frontend calls hello by name through its own agent's outbound proxy.
        client = Client(port)
        status, _, body = client.request("GET", "/frontend/via")
        client.close()
        assert status == 200
        answer = json.loads(body)
        assert answer["instance"] == "frontend-1"
        assert answer["upstream"]["status"] == 200
        assert answer["upstream"]["body"]["instance"].startswith("hello-")
        assert answer["upstream"]["body"]["path"] == "/via"
        # The README's live change: a route applied from another terminal, at once.
        url = text.split("export MESH_NATS_URL=", 1)[1].split()[0]
        route = tmp_path / "greet.yaml"
        route.write_text(
            "kind: Route\nname: greet\nmatch: {path_prefix: /greet}\n"
            "rewrite: {replace_prefix: /}\nto: [{service: hello}]\n"
        )
        applied = subprocess.run(
            [sys.executable, "-m", "mesh", "policy", "apply", "-f", str(route), "--wait"],
            env={**os.environ, "MESH_NATS_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "every live node applied it" in applied.stdout, applied.stdout + applied.stderr
        client = Client(port)
        status, _, body = client.request("GET", "/greet/anything")
        client.close()
        assert status == 200
        assert json.loads(body)["path"] == "/anything"

        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
        assert up.wait(30) == 0
        # NATS outlived the agents: each one's leave went out over it.
        assert "leave not confirmed" not in (tmp_path / "up.log").read_text()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
