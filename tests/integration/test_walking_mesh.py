"""The walking mesh end to end: real nats-server, real agents, services and gateways.

The processes run the `local` timing preset (0.2 s heartbeats): nothing here depends on
the lan timing, and what measures detection reads its bounds from the preset. A NATS
outage, with an agent leaving and another joining meanwhile, is test_chaos's test_d.
"""

from __future__ import annotations

import collections
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_procs import Client, Mesh, Proc, get_json, members, routable, wait_for

from mesh.playground.natsserver import NatsServer
from mesh.timing import PRESETS

INSTANCES = ("hello-a", "hello-b", "hello-c")
LOCAL = PRESETS["local"]
SUSPECT = LOCAL.interval * LOCAL.suspect_intervals  # silence before a member is not routed
DOWN = LOCAL.interval * LOCAL.down_intervals  # silence before it is down
SLACK = 0.6  # seconds for ticks, polling and a busy machine on top of a bound

Procs = dict[str, Proc]


def start_mesh(nats_url: str, workdir: Path, instances: tuple[str, ...]) -> tuple[Mesh, Procs]:
    """Instances of `hello`, each with its agent, and one gateway that sees them all."""
    # Issue 3's promise is round robin; the default balancer since issue 5 is least_request.
    env = {"MESH_BALANCE_ALGORITHM": "round_robin", "MESH_PRESET": "local"}
    mesh = Mesh(nats_url, workdir, env=env)
    procs: Procs = {}
    try:
        for name in instances:
            service = mesh.service(name)
            procs[name] = service
            procs[f"{name}-agent"] = mesh.agent(service)
        gateway = mesh.gateway()
        procs["gateway"] = gateway
        wait_for(lambda: len(routable(gateway.admin_port)) == len(instances), timeout=20)
    except BaseException:
        mesh.close()
        raise
    return mesh, procs


@pytest.fixture(scope="module")
def shared_mesh3(
    module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Mesh, Procs]]:
    """One mesh for the tests that only read it."""
    mesh, procs = start_mesh(module_nats.url, tmp_path_factory.mktemp("walking"), INSTANCES)
    yield mesh, procs
    mesh.close()


@pytest.fixture
def mesh3(shared_mesh3: tuple[Mesh, Procs]) -> Iterator[tuple[Mesh, Procs]]:
    """The shared mesh; processes a test adds are killed when it ends."""
    mesh, procs = shared_mesh3
    with mesh.borrowed():
        yield mesh, procs


def member(admin_port: int, instance: str) -> dict[str, Any]:
    return next((m for m in members(admin_port) if m["instance"] == instance), {})


def served_by(port: int, count: int) -> collections.Counter[str]:
    client = Client(port)
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        status, _, body = client.request("GET", "/hello/who")
        assert status == 200, body
        seen[json.loads(body)["instance"]] += 1
    client.close()
    return seen


def test_300_requests_reach_all_three_instances_in_near_equal_shares(mesh3) -> None:
    _mesh, procs = mesh3
    seen = served_by(procs["gateway"].port, 300)
    assert set(seen) == set(INSTANCES)
    assert all(90 <= n <= 110 for n in seen.values()), seen


def test_host_header_names_the_service_and_unknown_names_get_404(mesh3) -> None:
    _, procs = mesh3
    client = Client(procs["gateway"].port)
    status, _, body = client.request("GET", "/who?x=1", headers={"Host": "hello"})
    assert status == 200
    assert json.loads(body)["path"] == "/who?x=1"
    status, headers, body = client.request("GET", "/nosuch/thing")
    assert status == 404
    assert headers["x-mesh-flags"] == "NR"
    assert json.loads(body)["error"] == "NoRoute"


def test_a_gateway_started_after_the_agents_has_the_full_view_within_1s(mesh3) -> None:
    mesh, _ = mesh3
    late = mesh.gateway("late-gateway")

    def answers() -> bool:
        try:
            get_json(late.admin_port, "/healthz", timeout=0.5)
        except OSError:
            return not late.alive
        return True

    wait_for(answers, timeout=20, every=0.005)
    assert late.alive, late.output()
    # From the moment its admin port answers (NATS connection under way) to a full view.
    took = wait_for(lambda: len(routable(late.admin_port)) == 3, timeout=5, every=0.005)
    assert took < 1.0, f"took {took:.3f} s"
    print(f"\nlate gateway had the full view after {took * 1000:.0f} ms")


def test_sigterm_of_an_agent_removes_its_instance_within_1s(mesh3) -> None:
    mesh, procs = mesh3
    gateway, service = procs["gateway"], mesh.service("hello-s")
    agent, address = mesh.agent(service), f"127.0.0.1:{service.port}"
    wait_for(lambda: address in routable(gateway.admin_port), timeout=20)
    agent.signal(signal.SIGTERM)
    took = wait_for(lambda: address not in routable(gateway.admin_port), timeout=5)
    assert took < 1.0, f"took {took:.3f} s"
    state = {m["instance"]: m["state"] for m in members(gateway.admin_port)}
    assert state["hello-s-agent"] == "left"
    assert agent.wait(5) == 0
    print(f"\nleave removed the instance in {took * 1000:.0f} ms")


def test_kill_9_of_an_instance_and_its_agent_removes_it_within_the_down_time(mesh3) -> None:
    mesh, procs = mesh3
    gateway, service = procs["gateway"], mesh.service("hello-k")
    agent, address = mesh.agent(service), f"127.0.0.1:{service.port}"
    wait_for(lambda: address in routable(gateway.admin_port), timeout=20)
    killed = time.monotonic()
    service.signal(signal.SIGKILL)
    agent.signal(signal.SIGKILL)
    unroutable = wait_for(lambda: address not in routable(gateway.admin_port), timeout=10)
    seen = member(gateway.admin_port, "hello-k-agent")
    wait_for(lambda: member(gateway.admin_port, "hello-k-agent").get("state") == "down", 10)
    gone = time.monotonic() - killed
    down = member(gateway.admin_port, "hello-k-agent")
    # Never early: the gateway's own account of the silence when it acted.
    assert seen["state"] in ("suspect", "down")
    assert seen["heard_ago"] >= SUSPECT, seen
    assert down["heard_ago"] >= DOWN, down
    # Never late: the last heartbeat came at most an interval before the kill.
    assert unroutable <= SUSPECT + SLACK, f"still routed after {unroutable:.2f} s"
    assert gone <= DOWN + SLACK, f"down after {gone:.2f} s"
    assert set(served_by(gateway.port, 10)) == set(INSTANCES)
    print(f"\nkill -9: unroutable after {unroutable:.2f} s, down after {gone:.2f} s")
