"""`mesh up --cluster`: what it refuses before starting anything, and a node that fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mesh_cli import mesh_command

from mesh.errors import NatsServerError
from mesh.playground.natscluster import NatsCluster, node_config


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (("--cluster", "0"), "--cluster: 3 to 5 nodes"),
        (("--cluster", "2"), "--cluster: 3 to 5 nodes (fewer than 3 survive no loss)"),
        (("--cluster", "6"), "--cluster: 3 to 5 nodes"),
        (("--cluster", "3", "--secure"), "--cluster with --secure is not supported yet"),
        (("--cluster", "3", "--nats-url", "nats://127.0.0.1:1"), "leave out --nats-url"),
    ],
)
def test_what_cluster_refuses_is_one_line_before_anything_starts(
    args: tuple[str, ...], refusal: str
) -> None:
    ran = mesh_command("up", *args)
    assert ran.returncode == 2
    assert refusal in ran.stderr
    assert ran.stderr.count("\n") == 1
    assert ran.stdout == ""


def test_a_node_config_names_the_node_the_cluster_and_every_route() -> None:
    config = node_config(
        "mesh-nats-b",
        cluster="natsmesh",
        listen="10.0.0.2:6222",
        routes=["10.0.0.1:6222", "10.0.0.2:6222"],
    )
    assert config.startswith("server_name: mesh-nats-b\n")
    assert "  name: natsmesh\n  listen: 10.0.0.2:6222\n" in config
    assert "nats-route://10.0.0.1:6222,\n    nats-route://10.0.0.2:6222\n" in config


def test_every_node_of_a_presence_cluster_includes_the_same_accounts(tmp_path: Path) -> None:
    cluster = NatsCluster("nats-server", 3, folder=tmp_path, presence=True)
    assert cluster.accounts is not None
    configs = [(tmp_path / f"{name}.conf").read_text() for name in cluster.names]
    assert all(c.startswith('include "accounts.conf"\n') for c in configs)
    assert cluster.accounts.config == tmp_path / "accounts.conf"
    assert (tmp_path / "accounts.conf").stat().st_mode & 0o077 == 0  # it holds passwords


def test_a_node_that_cannot_start_stops_the_cluster_in_one_line(tmp_path: Path) -> None:
    failing = tmp_path / "nats-server"
    failing.write_text(f"#!{sys.executable}\nimport sys; print('bad config'); sys.exit(1)\n")
    failing.chmod(0o755)
    cluster = NatsCluster(str(failing), 3, folder=tmp_path / "cluster")
    with pytest.raises(NatsServerError) as failed:
        cluster.start(timeout=5)
    assert (
        str(failed.value) == "NATS node mesh-nats-a: nats-server exited with 1 at start: bad config"
    )
    assert not any(server.running for server in cluster.servers)
