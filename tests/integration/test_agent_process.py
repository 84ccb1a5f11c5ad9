"""The agent as a process: it says why its service gets no traffic; `mesh members` too."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("taken", ["admin", "outbound"])
def test_a_taken_port_ends_the_agent_with_one_line_before_it_joins(
    nats_server: NatsServer, tmp_path: Path, taken: str
) -> None:
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            held = holder.getsockname()[1]
            ports = {"admin": free_port(), "outbound": free_port(), taken: held}
            agent = mesh.spawn(
                "agent",
                "agent",
                *("--service", "taken", "--port", str(free_port()), "--instance-id", "taken-1"),
                *(
                    "--admin-port",
                    str(ports["admin"]),
                    "--outbound",
                    f"127.0.0.1:{ports['outbound']}",
                ),
            )
            assert agent.wait(10) == 2
        what = "admin address" if taken == "admin" else "outbound proxy"
        assert agent.output().splitlines() == [
            f"mesh agent: cannot listen on 127.0.0.1:{held} ({what}): address already in use"
        ]
    finally:
        mesh.close()
