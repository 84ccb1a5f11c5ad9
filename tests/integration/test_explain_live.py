"""`mesh explain` against a running mesh: it names the route and the instance that the next
request really takes, and an ejected instance with its until-time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from mesh_cli import mesh_command, policy
from mesh_procs import Client, wait_for

from agents.agent import AgentOptions
from agents.agent import run as run_agent
from gateway.gateway import run as run_gateway
from mesh import config, subjects
from mesh.bus import NatsBus
from mesh.forwarding.explanation import Explanation, Question
from mesh.node.ports import free_port
from mesh.playground import demo
from mesh.playground.natsserver import NatsServer

POLICIES = """\
kind: Route
name: api
match: {path_prefix: /api}
to: [{service: hello, subset: {version: v1}}]
---
kind: Route
name: canary
match: {path_prefix: /api, headers: [{name: x-canary, exact: "1"}]}
to: [{service: hello, subset: {version: v2}}]
---
kind: Route
name: other
match: {hosts: [other.example.com]}
to: [{service: hello}]
---
kind: Service
name: hello
preload: [hello]  # hello's agents follow hello too: hello-1's explains calls to it
balance: {algorithm: round_robin}
outlier: {consecutive_gateway_errors: 2, base_ejection: 60s}
"""

INSTANCES = (("hello-1", "v1"), ("hello-2", "v1"), ("hello-3", "v2"))

# The demo service, run in this process, keeps its client session under a str key.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


class Running:
    """Three demo instances with agents and a gateway, in one event loop of their own."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.gateway_port, self.gateway_admin = free_port(), free_port()
        self.demos = {name: demo.DemoState("hello", name) for name, _ in INSTANCES}
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),))

    async def main(self) -> None:
        settings = config.load(
            nats_url=self.nats_url,
            preset="local",
            health_interval=0.2,
            gateway_listen=f"127.0.0.1:{self.gateway_port}",
            gateway_admin=f"127.0.0.1:{self.gateway_admin}",
            gateway_name="edge",
        )
        tasks = []
        for name, version in INSTANCES:
            port = free_port()
            tasks.append(demo.serve(self.demos[name], "127.0.0.1", port, self.stop))
            options = AgentOptions(
                service="hello",
                port=port,
                host="127.0.0.1",
                health_path="/healthz",
                admin_port=0,
                version=version,
                instance_id=name,
                # Only hello-1's outbound proxy serves, so only it answers `mesh explain`.
                outbound=f"127.0.0.1:{free_port()}" if name == "hello-1" else "",
            )
            tasks.append(run_agent(settings, options, self.stop))
        tasks.append(run_gateway(settings, self.stop))
        await asyncio.gather(*tasks)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)


@pytest.fixture(scope="module")
def mesh(module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(module_nats.url)
    running.thread.start()
    try:
        client = Client(running.gateway_port)
        wait_for(lambda: _reachable(client), 15)
        folder = tmp_path_factory.mktemp("policies")
        (folder / "hello.yaml").write_text(POLICIES)
        applied = policy(module_nats.url, "apply", "-f", str(folder), "--wait")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        wait_for(lambda: _serves_everyone(client), 10)
        yield running
    finally:
        running.close()


def _reachable(client: Client) -> bool:
    try:
        return client.request("GET", "/hello/")[0] == 200
    except OSError:
        return False


def _serves_everyone(client: Client) -> bool:
    seen = {_instance(client, "/api/x", {"x-canary": "1"})}
    seen |= {_instance(client, "/api/x") for _ in range(4)}
    return seen == {"hello-1", "hello-2", "hello-3"}


def _instance(client: Client, path: str, headers: dict[str, str] | None = None) -> str:
    status, got, _ = client.request("GET", path, headers=headers or {})
    assert status == 200
    return got["x-instance"]


def explain(module_nats: NatsServer, *args: str) -> dict[str, object]:
    ran = mesh_command("explain", *args, "--json", "--nats-url", module_nats.url)
    assert ran.returncode == 0, ran.stderr
    answer: dict[str, object] = json.loads(ran.stdout)
    return answer


def test_explain_names_the_route_and_the_instance_the_next_request_takes(
    mesh: Running, module_nats: NatsServer
) -> None:
    client = Client(mesh.gateway_port)
    url = f"http://127.0.0.1:{mesh.gateway_port}/api/x"
    answer = explain(module_nats, "GET", url, "-H", "x-canary: 1")
    verdicts = [(v["route"], v["outcome"]) for v in answer["routes"]]  # type: ignore[index, union-attr]
    assert verdicts == [("canary", "matched"), ("api", "outranked"), ("other", "host")]
    [destination] = answer["destinations"]  # type: ignore[misc]
    pickable = [i["instance"] for i in destination["instances"] if i["candidate"]]
    assert pickable == ["hello-3"]  # the v2 subset
    assert _instance(client, "/api/x", {"x-canary": "1"}) == "hello-3"
    assert answer["role"] == "gateway"
    assert str(answer["node"]).startswith("edge-")
    assert set(answer["revisions"]) == {  # type: ignore[arg-type]
        "route.api",
        "route.canary",
        "route.other",
        "service.hello",
    }
    assert destination["policy"]["algorithm"] == "round_robin"
    assert destination["policy"]["revision"] == answer["revisions"]["service.hello"]  # type: ignore[index]


def test_explain_names_an_ejected_instance_and_its_until_time(
    mesh: Running, module_nats: NatsServer
) -> None:
    client = Client(mesh.gateway_port)
    mesh.demos["hello-2"].fail_status = 503
    try:
        # Round robin over hello-1 and hello-2: two 503s in a row eject hello-2 (each
        # request is retried on hello-1, so the client sees 200 throughout).
        for _ in range(6):
            _instance(client, "/api/x")
    finally:
        mesh.demos["hello-2"].fail_status = 0
    answer = explain(module_nats, "GET", f"http://127.0.0.1:{mesh.gateway_port}/api/x")
    [destination] = answer["destinations"]  # type: ignore[misc]
    rows = {i["instance"]: i for i in destination["instances"]}
    assert set(rows) == {"hello-1", "hello-2"}
    assert rows["hello-2"]["candidate"] is False
    until = rows["hello-2"]["ejected_until"] - answer["at"]
    assert 50 < until <= 60  # base_ejection 60s, ejected a moment ago
    assert rows["hello-1"]["candidate"] is True
    # hello-2 answers again, but stays out until its ejection ends: the next requests go
    # to the one instance explain calls pickable.
    assert {_instance(client, "/api/x") for _ in range(3)} == {"hello-1"}

    text = mesh_command("explain", "GET", "/api/x", "--nats-url", module_nats.url).stdout
    assert "api" in text
    assert "hello-2" in text
    assert "until " in text


def test_named_nodes_answer_and_missing_ones_are_one_line(
    mesh: Running, module_nats: NatsServer
) -> None:
    answer = explain(module_nats, "GET", "/hello/x", "--node", "hello")
    assert (answer["node"], answer["role"]) == ("hello-1", "agent")  # the one that routes
    answer = explain(module_nats, "GET", "/hello/x", "--node", "hello/hello-1")
    assert (answer["node"], answer["role"]) == ("hello-1", "agent")
    assert answer["chosen"]["route"] == "path"  # type: ignore[index]  # a default route
    ran = mesh_command("explain", "GET", "/x", "--node", "nosuch", "--nats-url", module_nats.url)
    assert ran.returncode != 0
    assert ran.stderr.count("\n") == 1
    assert "no node of nosuch answered on mesh.v1.explain.nosuch" in ran.stderr


def test_unreachable_nats_is_one_line(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    ran = mesh_command("explain", "GET", "/x", "--nats-url", url, "--timeout", "0.3s")
    assert ran.returncode != 0
    assert ran.stderr.count("\n") == 1
    assert "could not reach NATS" in ran.stderr


# Requests the reviewer found explained wrongly; (method, target, Host).
ODD = [
    ("GET", "/a/../hello/", "gw"),  # normalised: reaches hello
    ("GET", "/hello/%2Fx", "gw"),  # 400 DPE: an encoded '/'
    ("get", "/hello/", "gw"),  # 400: llhttp knows no such method
    ("GET", "/", "[::1"),  # 400: invalid Host
    ("GET", "/nothing", "gw"),  # 404 NR
]


def test_odd_requests_get_from_the_gateway_what_explain_says(
    mesh: Running, module_nats: NatsServer
) -> None:
    async def ask() -> list[Explanation]:
        bus = NatsBus(config.load(nats_url=module_nats.url), name="test-explain")
        await bus.start(wait=5.0)
        try:
            asked = [msgspec.json.encode(Question(*odd)) for odd in ODD]
            answers = [await bus.request(subjects.EXPLAIN, q, 5.0) for q in asked]
        finally:
            await bus.close()
        return [msgspec.json.decode(answer, type=Explanation) for answer in answers]

    for (method, target, host), answer in zip(ODD, asyncio.run(ask()), strict=True):
        status, flags = _sent(mesh.gateway_port, f"{method} {target} HTTP/1.1\r\nHost: {host}")
        expected = (answer.status, answer.flags) if answer.status else (200, "")
        assert (status, flags) == expected, (method, target, host, answer.error)


def _sent(port: int, head: str) -> tuple[int, str]:
    """The status and x-mesh-flags the gateway answers to `head` (its bytes, as written)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"{head}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(4096)):
            received += chunk
    lines = received.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    flags = [line[14:] for line in lines if line.lower().startswith("x-mesh-flags: ")]
    return int(lines[0].split()[1]), "".join(flags)
