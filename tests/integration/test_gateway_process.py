"""The gateway as a process: workers on the supervisor's socket, graceful stop, taken ports."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import promql
import pytest
from mesh_procs import Client, Mesh, Proc, routable, wait_for

from mesh import tls
from mesh.node.children import CANNOT_START
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer
from mesh.security import pki


@pytest.fixture(scope="module")
def hello_1(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """hello-1 and its agent, for the gateways of this module's tests to route to."""
    mesh = Mesh(nats_server.url, tmp_path_factory.mktemp("hello-1"))
    mesh.agent(mesh.service("hello-1"))
    yield mesh
    mesh.close()


@pytest.fixture
def mesh(hello_1: Mesh) -> Iterator[Mesh]:
    """The module's mesh: the gateway a test starts goes when it ends."""
    with hello_1.borrowed():
        yield hello_1


def start_gateway(mesh: Mesh, workers: int) -> Proc:
    gateway = mesh.gateway(workers=workers)
    wait_for(lambda: len(routable(gateway.admin_port)) == 1, timeout=20)
    return gateway


def admin_page(gateway: Proc, path: str, token: str | None) -> str:
    return admin_page_at(gateway.admin_port, path, token)


def admin_page_at(port: int, path: str, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as page:
        return str(page.read().decode())


def admin_json(gateway: Proc, path: str, token: str | None) -> tuple[int, Any]:
    """A JSON page of the admin port and its status, error statuses (503) included."""
    try:
        return 200, json.loads(admin_page(gateway, path, token))
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def both_workers_know_hello(gateway: Proc, token: str | None = None) -> bool:
    try:
        text = admin_page(gateway, "/metrics", token)
    except OSError:
        return False
    return all(
        f'mesh_members{{service="hello",state="alive",worker="{w}"}} 1.0' in text for w in "01"
    )


# Clients connecting at once, to show that a gateway's workers share a burst.
BURST = 32


def requests_to_hello(port: int, token: str) -> float:
    """Requests to `hello` that the admin port at `port` counted, summed over its series."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in admin_page_at(port, "/metrics", token).splitlines()
        if line.startswith("mesh_requests_total{") and 'service="hello"' in line
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_an_in_flight_request_finish_refuses_new_ones_then_exits_0(
    mesh: Mesh, workers: int
) -> None:
    gateway = start_gateway(mesh, workers=workers)
    if workers > 1:  # whichever worker takes the request must know hello
        wait_for(lambda: both_workers_know_hello(gateway), timeout=20)
    # /healthz gives the NATS state, of each worker too behind a supervisor.
    status, health = admin_json(gateway, "/healthz", None)
    assert (status, health["status"], health["nats"]) == (200, "ok", True), health
    if workers > 1:
        assert health["per_worker"].keys() == {"0", "1"}
        assert all(w["nats"] is True for w in health["per_worker"].values()), health
    demo = f"http://127.0.0.1:{mesh.procs[0].port}/_demo"
    urllib.request.urlopen(urllib.request.Request(f"{demo}/delay?ms=1500", method="POST")).read()
    result: dict[str, object] = {}

    def in_flight() -> None:
        status, headers, body = Client(gateway.port, timeout=10).request("GET", "/hello/slow")
        result.update(status=status, connection=headers.get("connection"), body=body)

    worker = threading.Thread(target=in_flight)
    try:
        worker.start()
        threading.Event().wait(0.3)  # the request is now waiting on the slow instance
        gateway.signal(signal.SIGTERM)
        threading.Event().wait(0.6)
        # Draining: no one accepts any more, so the port refuses (workers: the supervisor
        # closed its copy of the socket first, then theirs went).
        with socket.socket() as late:
            assert late.connect_ex(("127.0.0.1", gateway.port)) == errno.ECONNREFUSED
        assert worker.is_alive()  # that was during the drain
        worker.join(10)
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{demo}/reset", method="POST")).read()
    assert result["status"] == 200
    assert json.loads(result["body"])["path"] == "/slow"
    assert result["connection"] == "close"
    assert gateway.wait(15) == 0


def test_a_gateway_stopped_while_nats_is_away_ends_cleanly(mesh: Mesh) -> None:
    # Its JetStream setup still waits for NATS when it stops: that work's end is awaited,
    # not left for the garbage collector to report ("exception was never retrieved").
    mesh.env.update(MESH_NATS_URL=f"nats://127.0.0.1:{free_port()}", MESH_POLICY_WAIT="0.2")
    gateway = mesh.gateway("gateway-nats-away")  # a log of its own in the module's folder
    wait_for(lambda: "listening on" in gateway.output(), timeout=20)
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(15) == 0
    assert "never retrieved" not in gateway.output()
    assert "Traceback" not in gateway.output()


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port this (other) process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def gateway_exit(
    mesh: Mesh,
    listen: int,
    admin: int,
    *,
    workers: int = 2,
    worker: bool = False,
    label: str = "gateway",
) -> tuple[int, str]:
    """Run `mesh gateway` with `workers` (or as worker 0); its exit code and output."""
    role = ["--workers", "1", "--worker-index", "0"] if worker else ["--workers", str(workers)]
    gateway = mesh.spawn(
        label,
        "gateway",
        *role,
        "--listen",
        f"127.0.0.1:{listen}",
        "--admin",
        f"127.0.0.1:{admin}",
    )
    return gateway.wait(10), gateway.output()  # no restarting its workers for ever


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("taken", ["listen", "admin"])
def test_a_taken_port_ends_the_gateway_with_one_line_before_serving(
    nats_server: NatsServer, tmp_path: Path, taken: str, workers: int
) -> None:
    # One worker is the gateway itself; two are run by a supervisor. Either way nothing
    # serves, and the process ends (it used to serve, then ignore SIGTERM, or restart
    # its workers for ever).
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        with held_port() as held:
            ports = {"listen": free_port(), "admin": free_port(), taken: held}
            code, output = gateway_exit(mesh, ports["listen"], ports["admin"], workers=workers)
        assert code != 0
        assert output.splitlines() == [
            f"mesh gateway: cannot listen on 127.0.0.1:{held} ({taken} address): "
            "address already in use"
        ]
        with socket.socket() as probe:  # no worker ever bound the listen port
            assert probe.connect_ex(("127.0.0.1", ports["listen"])) != 0
    finally:
        mesh.close()


def test_a_worker_that_cannot_listen_tells_its_supervisor_a_restart_will_not_help(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # A port taken after the supervisor's check: the worker's exit code ends the gateway.
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        with held_port() as port:
            code, output = gateway_exit(mesh, port, free_port(), worker=True)
        assert code == CANNOT_START
        assert f"cannot listen on 127.0.0.1:{port}" in output
    finally:
        mesh.close()


def worker_pids(supervisor: Proc) -> list[int]:
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


def worker_argvs(supervisor: Proc) -> list[list[bytes]]:
    return [
        Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in worker_pids(supervisor)
    ]


def served_by_worker(supervisor: Proc) -> dict[str, float]:
    """Requests to `hello` each worker counted, by worker index, from its own admin port."""
    return {
        argv[argv.index(b"--worker-index") + 1].decode(): requests_to_hello(
            int(argv[argv.index(b"--admin") + 1].rsplit(b":")[1]), TOKEN
        )
        for argv in worker_argvs(supervisor)
    }


def burst(port: int) -> None:
    """BURST requests at once. One connection at a time may all go to whichever worker
    wakes first; a burst waiting in the backlog is shared (one accept per loop turn), so
    both workers serve."""
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(BURST)]
    for sock in connections:
        sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for sock in connections:
        with sock, sock.makefile("rb") as answer:
            assert answer.readline().startswith(b"HTTP/1.1 200 ")
            answer.read()


def worker_admin_ports(supervisor: Proc) -> list[int]:
    """Each worker's own loopback admin port, from its command line."""
    return [
        int(argv[argv.index(b"--admin") + 1].rsplit(b":")[1]) for argv in worker_argvs(supervisor)
    ]


TOKEN = "0123456789abcdef-admin"


def test_workers_with_https_and_an_admin_token_serve_on_sockets_no_stranger_can_join(
    mesh: Mesh, tmp_path: Path
) -> None:
    # The supervisor alone listens (no SO_REUSEPORT): a second gateway cannot join in and
    # take some of the clients, and a worker started again accepts on the same sockets.
    # One gateway start for all of it (HTTPS, admin token): each costs seconds.
    now = datetime.now(UTC)
    authority = pki.new_authority("test CA", now, timedelta(hours=1))
    key = pki.new_key()
    cert = pki.issue(
        authority, key.public_key(), common_name="gateway", now=now,
        lifetime=timedelta(hours=1), ips=["127.0.0.1"],
    )  # fmt: skip
    pki.write_public(tmp_path / "ca.crt", pki.cert_pem(authority.cert))
    pki.write_public(tmp_path / "gateway.crt", pki.cert_pem(cert))
    pki.write_private(tmp_path / "gateway.key", pki.key_pem(key))
    https = free_port()
    mesh.env["MESH_ADMIN_TOKEN"] = TOKEN  # until the test ends (a borrowed mesh)
    first = mesh.gateway(
        "first",
        "--listen-tls",
        f"127.0.0.1:{https}",
        "--tls-cert",
        str(tmp_path / "gateway.crt"),
        "--tls-key",
        str(tmp_path / "gateway.key"),
        workers=2,
    )
    wait_for(lambda: len(routable(first.admin_port, token=TOKEN)) == 1, timeout=20)
    code, output = gateway_exit(mesh, first.port, free_port(), workers=2, label="second")
    assert code != 0
    assert output.splitlines() == [
        f"mesh gateway: cannot listen on 127.0.0.1:{first.port} (listen address): "
        "address already in use"
    ]
    for port in (first.port, https):
        with socket.socket() as stranger:  # SO_REUSEPORT joined the workers' group until now
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError, match="in use") as refused:
                stranger.bind(("127.0.0.1", port))
            assert refused.value.errno == errno.EADDRINUSE
    # Both workers serve a burst; the admin port is scraped; then one of them dies.
    wait_for(lambda: both_workers_know_hello(first, TOKEN), timeout=20)
    burst(first.port)
    served_before = served_by_worker(first)
    assert all(served_before.values()), served_before
    assert requests_to_hello(first.admin_port, TOKEN) == BURST
    before = worker_pids(first)
    assert len(before) == 2
    argv = Path(f"/proc/{before[0]}/cmdline").read_bytes().split(b"\0")
    killed = argv[argv.index(b"--worker-index") + 1].decode()
    os.kill(before[0], signal.SIGKILL)
    # Until it is restarted (a second later, at the earliest), the admin port says which
    # worker is down, and pages the other one.
    wait_for(lambda: admin_json(first, "/healthz", TOKEN)[0] == 503, timeout=5)
    status, health = admin_json(first, "/healthz", TOKEN)
    alive = "1" if killed == "0" else "0"
    assert (status, health["status"], health["down"]) == (503, "failing", [killed]), health
    assert health["healthy_workers"] == 1
    assert health["per_worker"][killed]["status"] == "down"
    assert health["per_worker"][alive]["nats"] is True
    for path in ("/mesh/members", "/mesh/upstreams"):
        status, page = admin_json(first, path, TOKEN)
        assert (status, page["down"], list(page["per_worker"])) == (200, [killed], [alive])

    def restarted() -> bool:
        now = worker_pids(first)
        return len(now) == 2 and before[0] not in now and both_workers_know_hello(first, TOKEN)

    wait_for(restarted, timeout=20)
    context = tls.client_context(str(tmp_path / "ca.crt"))
    for _ in range(20):  # a new connection each time: any worker may take it
        client = Client(first.port)
        assert client.request("GET", "/hello/")[0] == 200
        client.close()
        secure = http.client.HTTPSConnection("127.0.0.1", https, timeout=5, context=context)
        secure.request("GET", "/hello/")
        assert secure.getresponse().status == 200
        secure.close()
    burst(first.port)
    # Each worker counts what it served (both served since the kill); the admin port,
    # asking them with the token, sums them, and still has what the killed one had counted.
    served = served_by_worker(first)
    assert served[killed] > 0, served  # from zero again
    assert served[alive] > served_before[alive], (served, served_before)
    assert requests_to_hello(first.admin_port, TOKEN) == BURST + 40 + BURST
    # Every other page of the admin port, too, is asked of every worker, with the token.
    status, health = admin_json(first, "/healthz", TOKEN)
    assert (status, health["status"], health["nats"], health["down"]) == (200, "ok", True, [])
    assert [w["nats"] for w in health["per_worker"].values()] == [True, True]
    _, view = admin_json(first, "/mesh/members", TOKEN)
    assert view["per_worker"].keys() == {"0", "1"}
    for members in (view["members"], *(w["members"] for w in view["per_worker"].values())):
        assert "hello" in {m["service"] for m in members if m["routable"]}
    _, upstreams = admin_json(first, "/mesh/upstreams", TOKEN)
    assert upstreams["per_worker"].keys() == {"0", "1"}  # each called hello since the kill
    for called in upstreams["per_worker"].values():
        assert [i["instance"] for i in called["hello"]["instances"]] == ["hello-1-agent"]
    # Every admin port, the workers' too, wants the token; none has it on its command line.
    for port in [first.admin_port, *worker_admin_ports(first)]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert refused.value.code == 401
    assert not any(TOKEN.encode() in arg for argv in worker_argvs(first) for arg in argv)
    text = admin_page(first, "/metrics", TOKEN)
    # The supervisor and each worker refused the one request above: a total of three.
    assert "mesh_admin_refused_total 3.0" in text, text
    # The merged page is as clean for Prometheus as each worker's (a single gateway's).
    for page in [text, *(admin_page_at(p, "/metrics", TOKEN) for p in worker_admin_ports(first))]:
        assert promql.promtool_problems(page) == ""
    first.signal(signal.SIGTERM)
    assert first.wait(20) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_certificate_that_cannot_be_used_ends_the_gateway_with_one_line(
    nats_server: NatsServer, tmp_path: Path, workers: int
) -> None:
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        gateway = mesh.spawn(
            "gateway",
            "gateway",
            "--workers",
            str(workers),
            "--listen-tls",
            f"127.0.0.1:{free_port()}",
            "--tls-cert",
            str(tmp_path / "bad.crt"),
            "--tls-key",
            str(tmp_path / "bad.key"),
            "--admin",
            f"127.0.0.1:{free_port()}",
        )
        assert gateway.wait(10) == 2
        [line] = gateway.output().splitlines()
        assert line.startswith(f"mesh gateway: TLS certificate {tmp_path / 'bad.crt'} ")
    finally:
        mesh.close()
