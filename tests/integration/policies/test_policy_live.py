"""Policies applied to a live mesh (the policy CLI in this process): routes, splits, acks."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mesh_cli import policy
from mesh_procs import Client, Mesh, Proc, routable, wait_for

from mesh import subjects
from mesh.bus import Delivery, NatsBus
from mesh.bus.kv import KvStore
from mesh.config import load as load_settings
from mesh.messages import Event, decode
from mesh.playground.natsserver import NatsServer

GREET = """\
kind: Route
name: greet
match: {hosts: [greet.example.com], path_prefix: /greet}
rewrite: {strip_prefix: true, replace_prefix: /hello}
to: [{service: hello}]
"""

CANARY = """\
kind: Route
name: canary
match: {hosts: [canary.example.com]}
to:
  - {service: hello, weight: 90, subset: {version: v1}}
  - {service: hello, weight: 10, subset: {version: v2}}
"""


Live = tuple[Mesh, Proc, dict[str, Proc]]


@pytest.fixture(scope="module", params=("python", "haproxy"))
def mesh_of_module(
    module_nats: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Live]:
    """hello v1 x2 and v2 x1 with agents, and a gateway that sees them, forwarding with
    the data plane of the parameter: one for the module per data plane."""
    mesh = Mesh(
        module_nats.url,
        tmp_path_factory.mktemp("procs"),
        env={"MESH_GATEWAY_DATA_PLANE": request.param},  # every gateway of the module
    )
    try:
        agents = {}
        for name, version in (("hello-v1a", "v1"), ("hello-v1b", "v1"), ("hello-v2", "v2")):
            agents[name] = mesh.agent(mesh.service(name), "hello", "--version", version)
        gateway = mesh.gateway()
        wait_for(lambda: len(routable(gateway.admin_port)) == 3, timeout=30)
        yield mesh, gateway, agents
    finally:
        mesh.close()


@pytest.fixture
def live(mesh_of_module: Live, module_nats: NatsServer) -> Iterator[Live]:
    """The module's mesh with no policy stored (every node acknowledged the deletions);
    processes and environment a test adds go when it ends."""
    mesh = mesh_of_module[0]
    for line in policy(module_nats.url, "list").stdout.splitlines()[1:]:
        deleted = policy(module_nats.url, "delete", line.split()[0], "--wait")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    with mesh.borrowed():
        yield mesh_of_module


def test_apply_wait_reports_every_node_and_traffic_follows_at_once(
    live: Live, module_nats: NatsServer, tmp_path: Path
) -> None:
    _, gateway, _agents = live
    client = Client(gateway.port)
    before = client.request("GET", "/greet/x", headers={"Host": "greet.example.com"})
    assert before[0] == 404  # no route yet: greet is no service name either
    (tmp_path / "greet.yaml").write_text(GREET)
    result = policy(module_nats.url, "apply", "-f", str(tmp_path / "greet.yaml"), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every live node applied it" in result.stdout
    acked = [line for line in result.stdout.splitlines() if line.split()[2:3] == ["applied"]]

    assert len(acked) == 4  # the gateway and the three agents
    status, _, body = client.request("GET", "/greet/x?y=1", headers={"Host": "greet.example.com"})
    assert status == 200
    assert json.loads(body)["path"] == "/hello/x?y=1"
    print("\n" + result.stdout.splitlines()[-1])


def test_a_canary_split_is_within_3_points_of_its_weights(
    live: Live, module_nats: NatsServer, tmp_path: Path
) -> None:
    _, gateway, _ = live
    (tmp_path / "canary.yaml").write_text(CANARY)
    assert policy(module_nats.url, "apply", "-f", str(tmp_path), "--wait").returncode == 0

    def requests(count: int) -> collections.Counter[str]:
        client, served = Client(gateway.port), collections.Counter[str]()
        for _ in range(count):
            status, _, body = client.request("GET", "/", headers={"Host": "canary.example.com"})
            assert status == 200
            served[json.loads(body)["instance"]] += 1
        client.close()
        return served

    with ThreadPoolExecutor(4) as pool:  # four clients at once: the gateway is not idle
        served = sum(pool.map(requests, [500] * 4), collections.Counter[str]())
    v2 = served["hello-v2"] / 2000
    assert abs(v2 - 0.10) <= 0.03, served
    assert served["hello-v1a"]
    assert served["hello-v1b"]
    print(f"\ncanary 90/10 over 2000 requests: v2 got {v2:.1%}")


async def test_an_invalid_revision_written_straight_to_the_bucket_is_rejected_everywhere(
    live: Live, module_nats: NatsServer, tmp_path: Path
) -> None:
    _, gateway, _ = live
    (tmp_path / "greet.yaml").write_text(GREET)
    applied = await asyncio.to_thread(
        policy, module_nats.url, "apply", "-f", str(tmp_path), "--wait"
    )
    assert applied.returncode == 0
    bus = NatsBus(load_settings(nats_url=module_nats.url), name="test")
    await bus.start(wait=5)
    rejected: dict[str, str] = {}
    everyone = asyncio.Event()

    async def collect(delivery: Delivery) -> None:
        event = decode(delivery.subject, delivery.data)
        if isinstance(event, Event) and event.kind == "policy.rejected":
            rejected[event.instance] = event.detail["reason"]
            if len(rejected) == 4:
                everyone.set()

    try:
        await bus.subscribe(f"{subjects.PREFIX}.events.policy.rejected.>", collect)
        await bus.flush(2)
        kv = KvStore(bus, subjects.POLICY_BUCKET)
        await kv.open()
        current = await kv.get("route.greet")
        assert current is not None
        bad = json.loads(current.value)
        bad["to"] = [{"service": "hello", "weight": "lots"}]  # bypasses every CLI check
        await kv.put("route.greet", json.dumps(bad).encode(), expected_revision=current.revision)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 10)

    finally:
        await bus.close()
    assert len(rejected) == 4, rejected
    assert all("to[0].weight" in reason for reason in rejected.values()), rejected
    # Traffic keeps flowing on the previous revision.
    status, _, body = await asyncio.to_thread(
        Client(gateway.port).request, "GET", "/greet/ok", None, {"Host": "greet.example.com"}
    )
    assert status == 200
    assert json.loads(body)["path"] == "/hello/ok"


def test_a_gateway_started_later_applies_the_current_revisions_before_it_serves(
    live: Live, module_nats: NatsServer, tmp_path: Path
) -> None:
    mesh, _, _ = live
    (tmp_path / "greet.yaml").write_text(GREET)
    assert policy(module_nats.url, "apply", "-f", str(tmp_path), "--wait").returncode == 0
    # Only declared routes: a gateway serving before its policies would answer 404.
    mesh.env["MESH_GATEWAY_DEFAULT_ROUTES"] = "false"
    late = mesh.gateway("late-gateway")
    client = Client(late.port)

    def first_answer() -> bool:
        try:
            status, _, _ = client.request("GET", "/greet/", headers={"Host": "greet.example.com"})
        except OSError:
            return False  # not listening yet
        assert status == 200  # the very first request it serves already has the route
        return True

    wait_for(first_answer, timeout=30)
    status, headers, _ = client.request("GET", "/hello/", headers={"Host": "x"})
    assert (status, headers["x-mesh-flags"]) == (404, "NR")  # default routes are off


def test_rollback_brings_the_previous_route_back_live(
    live: Live, module_nats: NatsServer, tmp_path: Path
) -> None:
    _, gateway, _ = live
    (tmp_path / "greet.yaml").write_text(GREET)
    first = policy(module_nats.url, "apply", "-f", str(tmp_path), "--wait")
    assert first.returncode == 0
    (tmp_path / "greet.yaml").write_text(GREET.replace("/hello", "/v2"))
    assert policy(module_nats.url, "apply", "-f", str(tmp_path), "--wait").returncode == 0
    client = Client(gateway.port)
    hit = client.request("GET", "/greet/a", headers={"Host": "greet.example.com"})
    assert json.loads(hit[2])["path"] == "/v2/a"
    [written] = [line for line in first.stdout.splitlines() if line.startswith("wrote")]
    history = policy(module_nats.url, "history", "route/greet").stdout.splitlines()[1:]
    revision = written.split()[-1]
    assert revision in [line.split()[0] for line in history]
    back = policy(module_nats.url, "rollback", "route/greet", "--to", revision, "--wait")
    assert back.returncode == 0, back.stdout + back.stderr
    hit = client.request("GET", "/greet/a", headers={"Host": "greet.example.com"})
    assert json.loads(hit[2])["path"] == "/hello/a"
