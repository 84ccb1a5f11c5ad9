"""Chaos with real processes: instances die, fail, restart and slow down under load.

Load runs through the gateway and through an agent's outbound proxy at once, 100
requests/s each, bounded in count and time (tests/load.py). The processes run the `local`
timing preset (0.2 s heartbeats, down after 1.2 s): what is checked here holds whatever
the preset, and the runs can be that much shorter. Steering away from a slow instance
happens within one node: tests/integration/engine/test_engine_balancing.py.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hello import Hello
from load import Load
from mesh_procs import Client, Mesh, Proc, outbound_serving, routable, wait_for

from mesh.playground.natsserver import NatsServer
from mesh.timing import PRESETS

INSTANCES = ("hello-a", "hello-b", "hello-c")
# The contract holds whichever engine forwards at the gateway (docs/haproxy.md).
BOTH_PLANES = pytest.mark.parametrize("chaos", ["python", "haproxy"], indirect=True)
RATE = 100.0  # per path: 200 requests/s in all
LOCAL = PRESETS["local"]
SUSPECT = LOCAL.interval * LOCAL.suspect_intervals  # silence before a member is not routed


@dataclass
class Chaos:
    mesh: Mesh
    services: dict[str, Proc]
    agents: dict[str, Proc]
    gateway: Proc
    caller: Proc  # the agent of `shop`, whose outbound proxy is the second path

    def loads(self, duration: float, **options: object) -> tuple[Load, Load]:
        via_gateway = Load(
            f"http://127.0.0.1:{self.gateway.port}/hello/chaos",
            rate=RATE,
            duration=duration,
            **options,  # type: ignore[arg-type]
        )
        via_agent = Load(
            "http://hello/chaos",
            proxy=f"http://127.0.0.1:{self.caller.port}",
            rate=RATE,
            duration=duration,
            **options,  # type: ignore[arg-type]
        )
        return via_gateway, via_agent

    def replace(self, names: tuple[str, ...]) -> dict[str, tuple[Proc, Proc]]:
        """Start a fresh instance (new port) under each name, all at once, and wait until
        every node routes to them; returns the replaced (service, agent) pairs."""
        replaced = {name: (self.services[name], self.agents[name]) for name in names}
        for name in names:
            self.services[name] = self.mesh.service(name)
            self.agents[name] = self.mesh.agent(self.services[name])
        addresses = {f"127.0.0.1:{self.services[name].port}" for name in names}
        for node in (self.gateway, self.caller):
            wait_for(lambda node=node: addresses <= routable(node.admin_port), timeout=20)
        return replaced

    def demo(self, name: str, order: str) -> None:
        port = self.services[name].port
        request = urllib.request.Request(f"http://127.0.0.1:{port}{order}", method="POST")
        urllib.request.urlopen(request, timeout=5).read()


@pytest.fixture
def chaos(
    fresh_nats: NatsServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Chaos]:
    """The gateway forwards with the data plane of the parameter; the agent with Python.
    `shop` answers in the test's process (nothing here stops or fails it): one process
    fewer to start per test."""
    plane = getattr(request, "param", "python")
    env = {"MESH_PRESET": "local", "MESH_GATEWAY_DATA_PLANE": plane}
    mesh = Mesh(fresh_nats.url, tmp_path, env=env)
    shop = Hello("shop-1")
    try:
        services = {name: mesh.service(name) for name in INSTANCES}
        agents = {name: mesh.agent(services[name]) for name in INSTANCES}
        caller = mesh.agent(shop, "shop")
        gateway = mesh.gateway()
        wait_for(lambda: outbound_serving(caller), timeout=30)
        first = Client(caller.port)
        first.request("GET", "http://hello/")  # from its first call, the caller follows hello
        first.close()
        for node in (gateway, caller):
            wait_for(lambda node=node: len(routable(node.admin_port)) == 3, timeout=30)
        yield Chaos(mesh, services, agents, gateway, caller)
    finally:
        mesh.close()
        shop.close()


def ejections(admin_port: int, service: str = "hello") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(f'mesh_ejections_active{{service="{service}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@BOTH_PLANES
def test_a_kill_9_of_an_instance_mid_load_fails_no_idempotent_request(chaos: Chaos) -> None:
    loads = chaos.loads(3.0)
    for load in loads:
        load.start()
    time.sleep(0.5)
    chaos.services["hello-b"].signal(signal.SIGKILL)
    chaos.agents["hello-b"].signal(signal.SIGKILL)
    killed_at = loads[0].elapsed()
    gateway, agent = loads[0].join(), loads[1].join()
    for tally in (gateway, agent):
        assert tally.failures == [], tally.failures[:5]
        assert tally.ok == tally.sent
    timelines = gateway.timeline + agent.timeline
    dead = [i for t, i, _ in timelines if t > killed_at + 1.0 and i == "hello-b"]
    assert dead == []
    print(f"\nkill -9 under load: {gateway.sent + agent.sent} requests, 0 failed")


@BOTH_PLANES
def test_b_an_instance_answering_503_is_ejected_everywhere_within_1s(chaos: Chaos) -> None:
    loads = chaos.loads(3.0)
    for load in loads:
        load.start()
    time.sleep(0.5)
    chaos.demo("hello-c", "/_demo/fail?status=503")
    failed_at = loads[0].elapsed()
    gateway, agent = loads[0].join(), loads[1].join()
    for tally in (gateway, agent):
        # 503 is retried on another instance: the clients should not even notice.
        assert tally.failures == [], tally.failures[:5]
        assert tally.share("hello-c", since=failed_at + 1.0) < 0.02, tally.by_instance
    # Ejected on every node that routes to hello: the two that saw it fail (hello's own
    # agents do not call hello, so they do not follow it; evidence heard from others
    # ejects too: tests/integration/test_events_once.py).
    nodes = [chaos.gateway, chaos.caller]
    counts = [ejections(node.admin_port) for node in nodes]
    assert counts == [1.0] * len(nodes), counts
    print(
        f"\n503 instance: share after 1 s {gateway.share('hello-c', failed_at + 1):.3f} "
        f"(gateway) {agent.share('hello-c', failed_at + 1):.3f} (agent); ejected on "
        f"{len(nodes)} nodes"
    )


@BOTH_PLANES
def test_c_a_rolling_restart_with_graceful_leave_fails_nothing_posts_included(
    chaos: Chaos,
) -> None:
    loads = chaos.loads(40.0, methods=("GET", "POST"))  # ends with the restart
    for load in loads:
        load.start()
    time.sleep(0.5)
    # The new instances join under load first (started together: their starts are most
    # of this test's time), then the old ones leave one after another, each gone from
    # every node's routing before the next leaves.
    for service, agent in chaos.replace(INSTANCES).values():
        agent.signal(signal.SIGTERM)  # leave: no new requests go there
        time.sleep(0.3)  # in-flight ones finish
        service.signal(signal.SIGTERM)
        service.wait(10)
        gone = f"127.0.0.1:{service.port}"
        for node in (chaos.gateway, chaos.caller):
            wait_for(lambda n=node, a=gone: a not in routable(n.admin_port), timeout=5)
    time.sleep(0.5)  # the replacements serve on their own
    for load in loads:
        load.stop()
    gateway, agent = loads[0].join(), loads[1].join()
    for tally in (gateway, agent):
        assert tally.failures == [], tally.failures[:5]
        assert tally.ok == tally.sent
    print(f"\nrolling restart: {gateway.sent + agent.sent} requests (half POST), 0 failed")


@BOTH_PLANES
def test_d_nats_down_for_4s_mid_load_fails_nothing_and_the_view_catches_up(
    chaos: Chaos, fresh_nats: NatsServer
) -> None:
    # 4 s is over three times the down time: a view that was not frozen would expire.
    loads = chaos.loads(20.0)  # ends once the view has caught up
    for load in loads:
        load.start()
    time.sleep(0.5)
    fresh_nats.kill()
    outage = time.monotonic()
    # While NATS is away: an agent stops (its leave is lost) and a new instance starts.
    chaos.agents["hello-a"].signal(signal.SIGTERM)
    newcomer = chaos.mesh.service("hello-d")
    chaos.mesh.agent(newcomer)
    time.sleep(4.0 - (time.monotonic() - outage))
    during = [routable(node.admin_port) for node in (chaos.gateway, chaos.caller)]
    fresh_nats.restart()
    back = time.monotonic()
    address = f"127.0.0.1:{newcomer.port}"
    silent = f"127.0.0.1:{chaos.services['hello-a'].port}"
    joined = max(
        wait_for(lambda node=node: address in routable(node.admin_port), timeout=5)
        for node in (chaos.gateway, chaos.caller)
    )
    wait_for(lambda: silent not in routable(chaos.gateway.admin_port), timeout=10)
    departed = time.monotonic() - back
    wait_for(lambda: silent not in routable(chaos.caller.admin_port), timeout=2)
    caught_up = [load.elapsed() for load in loads]
    time.sleep(0.5)  # traffic on the caught-up view
    for load in loads:
        load.stop()
    gateway, agent = loads[0].join(), loads[1].join()
    for tally, since in zip((gateway, agent), caught_up, strict=True):
        assert tally.failures == [], tally.failures[:5]
        # What forwards follows the view, not only the view: a HAProxy gateway's servers
        # too. (hello-a still answers: only its agent stopped, so only this tells.)
        assert tally.share("hello-d", since) > 0, tally.by_instance
        assert tally.share("hello-a", since + 0.1) == 0, tally.by_instance
    assert [len(view) for view in during] == [3, 3]  # frozen: nothing expired meanwhile
    assert joined < 3.0, f"newcomer seen {joined:.2f} s after NATS returned"
    # The silent one gets a full suspect period from the reconnect, no less.
    assert SUSPECT <= departed <= SUSPECT + 2.0, f"departed {departed:.2f} s after NATS returned"
    print(
        f"\nNATS down 4 s: {gateway.sent + agent.sent} requests, 0 failed; newcomer seen after "
        f"{joined:.2f} s, silent agent unroutable after {departed:.2f} s"
    )
