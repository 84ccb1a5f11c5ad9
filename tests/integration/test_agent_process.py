"""The agent as a process: it says why its service gets no traffic; `mesh members` too."""

from __future__ import annotations

import time
from pathlib import Path

from mesh_cli import mesh_command
from mesh_procs import Mesh, wait_for

from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer


def health_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "its health check" in line]


def test_an_unanswered_health_check_is_logged_once_and_the_members_star_explained(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mesh = Mesh(nats_server.url, tmp_path, env={"MESH_HEALTH_INTERVAL": "0.1"})
    port = free_port()  # nothing listens here yet
    try:
        agent = mesh.spawn(
            "agent",
            "agent",
            *("--service", "silent", "--port", str(port), "--instance-id", "silent-1"),
            *("--admin-port", str(free_port()), "--outbound", ""),
        )
        wait_for(lambda: health_lines(agent.output()) != [], timeout=10)
        time.sleep(0.5)  # five more failing checks: said once at start, not at each
        [failing] = health_lines(agent.output())
        assert "failing its health check" in failing
        assert f"GET http://127.0.0.1:{port}/healthz: ClientConnectorError" in failing

        members = mesh_command("members", "--nats-url", nats_server.url, "--wait", "0.5")
        row = next(line for line in members.stdout.splitlines() if "silent-1" in line)
        assert "alive*" in row.split()
        assert "* not routable: no new requests go there until it is alive, passes its health" in (
            members.stdout
        )

        mesh.spawn("silent-1", "demo-service", "--service", "silent", "--port", str(port))
        wait_for(lambda: len(health_lines(agent.output())) == 2, timeout=10)
        assert "passing its health check" in health_lines(agent.output())[1]
    finally:
        mesh.close()
