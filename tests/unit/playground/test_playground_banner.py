"""mesh up's banner: `mesh` is spelled as this shell can run it; every line it prints is true."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mesh.playground.banner import NatsNode, Secured, mesh_command, text
from mesh.playground.lineup import Instance

BIN = Path(sys.executable).parent


@pytest.fixture
def installed() -> None:
    if not (BIN / "mesh").exists():
        pytest.skip("no mesh script beside this python (natsmesh not installed)")


@pytest.mark.usefixtures("installed")
def test_mesh_when_path_finds_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(BIN))
    assert mesh_command() == "mesh"


@pytest.mark.usefixtures("installed")
def test_its_path_when_path_does_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mesh there
    monkeypatch.chdir(BIN.parent.parent)  # where `make install` made .venv
    assert mesh_command() == str((BIN / "mesh").relative_to(BIN.parent.parent))
    monkeypatch.chdir(tmp_path)  # elsewhere: the whole path
    assert mesh_command() == str(BIN / "mesh")


def test_the_banner_names_each_instance_its_version_and_pids() -> None:
    instances = [
        Instance("hello-1", "hello", "v1", 9001, 9101, 9201),
        Instance("hello-2", "hello", "v2", 9002, 9102, 9202),
        Instance("frontend-1", "frontend", "v1", 9003, 9103, 9203, calls="hello"),
    ]
    pids = {"hello-1": 11, "hello-1 agent": 12, "hello-2": 21, "hello-2 agent": 22}
    pids |= {"frontend-1": 31, "frontend-1 agent": 32}
    banner = text(
        instances,
        pids,
        listen="127.0.0.1:8000",
        admin="127.0.0.1:8001",
        nats_url="nats://127.0.0.1:4333",
        applied="",
    )
    assert "  hello-2     v2  http://127.0.0.1:9002  pid 21, agent pid 22" in banner
    assert "10% to v2 (hello-2)" in banner
    assert "curl -X POST 'http://127.0.0.1:9002/_demo/fail?status=500'" in banner
    assert "kill -9 21" in banner
    assert "explain GET http://127.0.0.1:8000/hello/" in banner
    assert "# the dashboard: http://127.0.0.1:8001/\n" in banner
    assert banner.endswith("Ctrl-C stops everything; so does the death of the gateway or of NATS.")


def test_with_an_admin_token_the_banner_names_the_variable_never_the_value() -> None:
    instances = [Instance("hello-1", "hello", "v1", 9001, 9101, 9201)]
    pids = {"hello-1": 11, "hello-1 agent": 12}
    where = {"listen": "127.0.0.1:8000", "admin": "127.0.0.1:8001", "nats_url": "nats://n"}
    banner = text(instances, pids, **where, applied="", admin_token=True)
    curl = 'curl -H "Authorization: Bearer $MESH_ADMIN_TOKEN" http://127.0.0.1:8001/mesh/members'
    assert curl in banner
    assert "http://127.0.0.1:8001/  (any user name, $MESH_ADMIN_TOKEN as password)" in banner
    assert "curl http://127.0.0.1:8001/mesh/members" in text(instances, pids, **where, applied="")


def test_a_secure_banner_says_how_other_terminals_log_in_and_what_mtls_shows(
    tmp_path: Path,
) -> None:
    instances = [Instance("hello-1", "hello", "v1", 9001, 9101, 9201, inbound=9301)]
    pids = {"hello-1": 11, "hello-1 agent": 12, "mesh ca": 13}
    where = {"listen": "127.0.0.1:8000", "admin": "127.0.0.1:8001", "applied": ""}
    bare = [Instance("hello-1", "hello", "v1", 9001, 9101, 9201)]
    plain = text(bare, pids, nats_url="nats://127.0.0.1:4333", **where)
    secured = Secured(tmp_path, "corp.example", tmp_path / "hello-access.yaml", Path("r.yaml"))
    secure = text(instances, pids, nats_url="nats://127.0.0.1:4333", secure=secured, **where)
    assert "monitor.env" not in plain
    assert "TLS" not in plain
    assert "mesh ca" not in plain
    assert "inbound" not in plain
    assert "  mesh ca  signs spiffe://corp.example/ns/default/sa/*, pid 13" in secure
    assert "(admin :9101, outbound :9201, mTLS inbound :9301)" in secure
    assert "mTLS strict (trust domain corp.example)" in secure
    assert '/hello/     # "peer": "spiffe://corp.example/ns/default/sa/gateway"' in secure
    assert '"peer": "spiffe://corp.example/ns/default/sa/frontend"' in secure
    assert f"policy apply -f {tmp_path / 'hello-access.yaml'}); curl" in secure
    assert "nats://127.0.0.1:4333  (TLS, a least-privilege NKey user per process)" in secure
    assert f"set -a; . {tmp_path / 'monitor.env'}; set +a   # read-only" in secure
    assert f"set -a; . {tmp_path / 'admin.env'};" in secure


def test_a_cluster_banner_lists_every_node_and_exports_every_url() -> None:
    instances = [Instance("hello-1", "hello", "v1", 9001, 9101, 9201)]
    pids = {"hello-1": 11, "hello-1 agent": 12}
    nodes = [
        NatsNode(f"mesh-nats-{n}", f"nats://127.0.0.1:{4000 + i}", 100 + i)
        for i, n in enumerate("abc")
    ]
    urls = ",".join(node.url for node in nodes)
    banner = text(
        instances,
        pids,
        listen="127.0.0.1:8000",
        admin="127.0.0.1:8001",
        nats_url=urls,
        applied="",
        nats_nodes=nodes,
    )
    assert "  mesh-nats-b  nats://127.0.0.1:4001  pid 101\n" in banner
    assert f"export MESH_NATS_URL={urls}\n" in banner
    assert "kill -9 101   # mesh-nats-b" in banner
    assert banner.endswith("(NATS nodes may die: the other nodes carry on).")
