"""`mesh gateway --data-plane haproxy` as real processes: forwarding, ejection both ways,
policies acknowledged once live, metrics, HAProxy's restart, and starts that cannot be."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_cli import mesh_command, policy
from mesh_procs import Client, Mesh, Proc, outbound_serving, routable, wait_for
from prometheus_client.parser import text_string_to_metric_families

from mesh.errors import MeshError
from mesh.haproxy.binary import find_binary
from mesh.playground.natsserver import NatsServer

try:
    find_binary(None)
except MeshError as missing:  # pragma: no cover - `make test` installs it
    pytest.skip(str(missing), allow_module_level=True)

# Each test that fails one has its own: c refuses, b answers 503. (A kill -9 under load:
# tests/integration/test_chaos.py, on both data planes.)
INSTANCES = ("hello-a", "hello-b", "hello-c")
# A service only the sampled gateway's streak test fails, so no other test sees it ejected.
TALLY = ("tally-a", "tally-b")
# The sampled gateway: 1 in 10 successes logged, and two 5xx in a row eject.
SAMPLED = {"MESH_HAPROXY_LOG_SAMPLE": "10", "MESH_OUTLIER_CONSECUTIVE_5XX": "2"}

GREET = """\
kind: Route
name: greet
match: {hosts: [greet.example.com], path_prefix: /greet}
rewrite: {strip_prefix: true, replace_prefix: /hello}
to: [{service: hello}]
"""

LIMITED = """\
kind: Route
name: limited
match: {path_prefix: /limited}
to: [{service: hello}]
rate_limit: {requests_per_second: 5}
"""


@dataclass
class Plane:
    mesh: Mesh
    gateway: Proc
    caller: Proc  # shop's agent: a Python data plane calling hello beside the gateway
    services: dict[str, Proc]
    agents: dict[str, Proc]
    sampled: Proc  # a second HAProxy gateway, with SAMPLED
    tally: dict[str, Proc]  # tally's instances, only ever sent to by `sampled`


@pytest.fixture(scope="module")
def plane(module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    env = {"MESH_PRESET": "local", "MESH_HAPROXY_LOG_SAMPLE": "1"}  # exact counts here
    mesh = Mesh(module_nats.url, tmp_path_factory.mktemp("procs"), env=env)
    try:
        services = {name: mesh.service(name) for name in INSTANCES}
        agents = {}
        for name in INSTANCES:
            # hello-c's agent checks its service once a minute: only traffic finds it dead.
            slow = {"MESH_HEALTH_INTERVAL": "60"} if name == "hello-c" else {}
            mesh.env.update(slow)
            agents[name] = mesh.agent(services[name])
            for key in slow:
                del mesh.env[key]
        caller = mesh.agent(mesh.service("shop-1", service="shop"), "shop")
        tally = {name: mesh.service(name, service="tally") for name in TALLY}
        for proc in tally.values():
            mesh.agent(proc, "tally")
        gateway = mesh.gateway("gateway", "--data-plane", "haproxy")
        mesh.env.update(SAMPLED)
        sampled = mesh.gateway("sampled-gateway", "--data-plane", "haproxy")
        for key in SAMPLED:
            del mesh.env[key]
        wait_for(lambda: outbound_serving(caller), timeout=30)
        Client(caller.port).request("GET", "http://hello/")  # it follows hello from now
        for node in (gateway, caller):
            wait_for(lambda node=node: len(routable(node.admin_port)) == len(INSTANCES), timeout=30)
        wait_for(lambda: len(routable(sampled.admin_port, "tally")) == len(TALLY), timeout=30)
        for node in (gateway, sampled):
            wait_for(lambda node=node: Client(node.port).request("GET", "/hello/")[0] == 200, 10)
        yield Plane(mesh, gateway, caller, services, agents, sampled, tally)
    finally:
        mesh.close()


def metric(admin_port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as page:
        text = page.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def served_by(port: int, count: int, path: str = "/hello/x", **headers: str) -> list[str]:
    client, seen = Client(port), []
    for _ in range(count):
        status, _, body = client.request("GET", path, headers=headers)
        assert status == 200, body
        seen.append(json.loads(body)["instance"])
    client.close()
    return seen


def test_default_routes_balance_over_every_instance_through_haproxy(plane: Plane) -> None:
    seen = served_by(plane.gateway.port, 60)
    assert set(seen) == set(INSTANCES)
    status, _, body = Client(plane.gateway.port).request("GET", "/hello/a/b?c=1")
    assert status == 200
    assert json.loads(body)["path"] == "/a/b?c=1"  # the service's segment stripped


def test_no_route_is_the_python_engines_404(plane: Plane) -> None:
    status, headers, body = Client(plane.gateway.port).request("GET", "/nobody/x")
    assert status == 404
    assert headers["x-mesh-flags"] == "NR"
    answer = json.loads(body)
    assert answer["flags"] == "NR"
    assert answer["request_id"]


def test_haproxys_requests_are_the_gateways_metrics(plane: Plane) -> None:
    port = plane.gateway.admin_port
    before = metric(port, "mesh_requests_total", service="hello", route="path", code="200")
    served_by(plane.gateway.port, 20)
    wait_for(
        lambda: (
            metric(port, "mesh_requests_total", service="hello", route="path", code="200")
            >= before + 20
        ),
        timeout=3,
    )
    assert metric(port, "mesh_upstream_instance_attempts_total", service="hello") >= 20
    assert metric(port, "mesh_request_duration_seconds_count", service="hello") >= 20


def test_sampled_logs_count_each_line_for_the_requests_it_stands_for(plane: Plane) -> None:
    """With 1 in 10 answers logged, 300 requests are counted about 300 times: the lines
    are Binomial(300, 0.1), 30 +- 5.2, so 12..60 lines (120..600) fails one run in millions."""
    port = plane.sampled.admin_port
    wait_for(lambda: len(routable(port)) == len(INSTANCES), timeout=10)
    before = metric(port, "mesh_requests_total", service="hello", code="200")
    served_by(plane.sampled.port, 300)
    time.sleep(0.3)  # the last lines on their way
    counted = metric(port, "mesh_requests_total", service="hello", code="200") - before
    assert 120 <= counted <= 600
    assert counted % 10 == 0


def test_sampled_logs_eject_an_instance_failing_every_answer_not_one_failing_one_in_ten(
    plane: Plane,
) -> None:
    """Through the sampled gateway: tally-a fails every tenth answer, never two in a row,
    and stays in; tally-b fails every one and is ejected. Before answers were numbered,
    successes the log left out made tally-a's 15 to 60 failures look consecutive: each
    pair had a 0.9^9 chance to, so it stayed in one run in a thousand at most."""
    sampled, tally = plane.sampled, plane.tally
    client = Client(sampled.port)

    def ejections(instance: str) -> float:
        labels = {"service": "tally", "mesh_instance": f"{instance}-agent"}
        return metric(sampled.admin_port, "mesh_upstream_ejections_total", **labels)

    demo(tally["tally-a"], "/_demo/fail?status=500&every=10")
    try:
        statuses = collections.Counter(client.request("GET", "/tally/x")[0] for _ in range(600))
        time.sleep(0.3)  # the last lines on their way
        assert ejections("tally-a") == 0
        assert 15 <= statuses[500] <= 60, statuses  # a's tenths of its share (random(2))
        demo(tally["tally-b"], "/_demo/fail?status=500")
        for _ in range(20):  # b's first two answers eject it
            for _ in range(5):
                client.request("GET", "/tally/x")
            if ejections("tally-b"):
                break
            time.sleep(0.05)
        assert ejections("tally-b") == 1
        assert ejections("tally-a") == 0
    finally:
        client.close()
        for proc in tally.values():
            demo(proc, "/_demo/reset")


def test_a_policy_is_acknowledged_by_the_haproxy_gateway_only_once_it_serves_it(
    plane: Plane, module_nats: NatsServer, tmp_path: Path
) -> None:
    (tmp_path / "greet.yaml").write_text(GREET)
    try:
        result = policy(module_nats.url, "apply", "-f", str(tmp_path / "greet.yaml"), "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "every live node applied it" in result.stdout
        # Acknowledged: the very next request takes the route.
        status, _, body = Client(plane.gateway.port).request(
            "GET", "/greet/x?y=1", headers={"Host": "greet.example.com"}
        )
        assert status == 200
        assert json.loads(body)["path"] == "/hello/x?y=1"
    finally:
        policy(module_nats.url, "delete", "route.greet", "--wait")


def test_a_tap_is_refused_by_the_haproxy_gateway_saying_why(
    plane: Plane, module_nats: NatsServer
) -> None:
    ran = mesh_command("tap", "--nats-url", module_nats.url, "--json", "--duration", "1s")
    assert ran.returncode == 0, ran.stderr
    assert "refused this tap, its haproxy data plane cannot be tapped yet" in ran.stderr
    assert "refused by 2 nodes" in ran.stderr  # the HAProxy gateways; the agents serve it


def test_a_revision_haproxy_cannot_serve_is_rejected_by_the_haproxy_gateways_alone(
    plane: Plane, module_nats: NatsServer, tmp_path: Path
) -> None:
    (tmp_path / "limited.yaml").write_text(LIMITED)
    try:
        result = policy(module_nats.url, "apply", "-f", str(tmp_path / "limited.yaml"), "--wait")
        assert result.returncode != 0
        rejected = [line for line in result.stdout.splitlines() if "rejected" in line]
        assert len(rejected) == 2, result.stdout  # the gateway and the sampled one
        assert all(" gateway " in line for line in rejected)
        assert "not supported yet on the haproxy data plane" in result.stdout
        # The gateway serves on with what it had.
        assert Client(plane.gateway.port).request("GET", "/limited/x")[0] == 404
    finally:
        policy(module_nats.url, "delete", "route.limited", "--wait")


def test_a_slow_instance_gets_a_small_share_under_concurrent_load(plane: Plane) -> None:
    """least_request is HAProxy's random(2) on connections: an instance 300 ms slow holds
    its connections, so the pick of two goes to the other (the engine's contract)."""
    a = plane.services["hello-a"]
    demo(a, "/_demo/delay?ms=300")
    try:
        with ThreadPoolExecutor(8) as pool:
            seen = [
                i
                for batch in pool.map(lambda _: served_by(plane.gateway.port, 40), range(8))
                for i in batch
            ]
    finally:
        demo(a, "/_demo/reset")
    share = seen.count("hello-a") / len(seen)
    assert share < 0.25, collections.Counter(seen)  # a third each without steering; 0.13 seen


def demo(service: Proc, order: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{service.port}{order}", method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def test_a_refusal_haproxy_sees_is_evidence_for_every_other_node(plane: Plane) -> None:
    """hello-c's process dies while its agent lives on: the gateway's HAProxy is the first
    to find nothing listening, and shop's agent ejects it on the gateway's word."""
    before = metric(plane.caller.admin_port, "mesh_upstream_ejections_total", service="hello")
    plane.services["hello-c"].signal(signal.SIGKILL)
    client = Client(plane.gateway.port)
    for _ in range(12):  # a few land on hello-c: refused, retried elsewhere
        assert client.request("GET", "/hello/x")[0] == 200
    wait_for(
        lambda: (
            metric(plane.caller.admin_port, "mesh_upstream_ejections_total", service="hello")
            > before
        ),
        timeout=3,
    )


def test_evidence_from_another_node_takes_the_instance_out_of_haproxy(plane: Plane) -> None:
    """hello-b fails only the calls of shop's agent (the Python data plane); the HAProxy
    gateway, which sent it nothing, stops sending it anything on that agent's word."""
    b = plane.services["hello-b"]
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{b.port}/_demo/fail?status=503", method="POST"),
        timeout=5,
    ).read()
    try:
        caller = Client(plane.caller.port)
        for _ in range(30):
            caller.request("GET", "http://hello/x")
        wait_for(lambda: metric(plane.gateway.admin_port, "mesh_ejections_active") >= 1, 3)
        assert "hello-b" not in served_by(plane.gateway.port, 30)
    finally:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{b.port}/_demo/reset", method="POST"),
            timeout=5,
        ).read()


def test_haproxy_killed_is_started_again_and_reported(plane: Plane) -> None:
    children = _children(plane.gateway.pid)
    assert children, "no HAProxy under the gateway"
    for pid in children:  # its master, and the master's worker with it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: metric(plane.gateway.admin_port, "mesh_dataplane_restarts_total") == 1, 10)
    wait_for(lambda: Client(plane.gateway.port).request("GET", "/hello/x")[0] == 200, 10)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_missing_binary_or_a_taken_port_ends_the_start_in_one_line(
    module_nats: NatsServer,
) -> None:
    def start(*env: tuple[str, str], listen: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mesh", "gateway", "--data-plane", "haproxy"]
        command += ["--listen", listen, "--admin", "127.0.0.1:0", "--nats-url", module_nats.url]
        return subprocess.run(
            command, env={**_environ(), **dict(env)}, capture_output=True, text=True, timeout=30
        )

    missing = start(("MESH_HAPROXY_BIN", "/nonexistent/haproxy"), listen="127.0.0.1:0")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0
    assert "apt-get install haproxy" in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = start(listen=f"127.0.0.1:{port}")
    assert busy.returncode != 0
    assert busy.stderr.strip().count("\n") == 0, busy.stderr
    assert "address already in use" in busy.stderr


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
