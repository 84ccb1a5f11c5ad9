"""A mesh across hosts (network namespaces): a host cut off and back, a gateway added and removed.

Layout (tests/hosts.py): `nats` runs nats-server; `gw1` (and `gw2`, when added) a
gateway; `a` and `b` an instance of `hello` each (demo service + agent); `c` an agent of
`shop` whose outbound proxy listens on the test network; `client` runs the load (a bounded
tests/load.py run). Load goes through gw1 and through c's outbound proxy, 100 requests/s
each, and no idempotent request may fail. The `local` timing preset: suspect after 0.6 s of
silence, down after 1.2 s.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hosts import Host, Hosts, Unavailable, check_available, sweep
from mesh_procs import wait_for

from mesh.node.children import Child
from mesh.timing import PRESETS

LOCAL = PRESETS["local"]
SUSPECT = LOCAL.interval * LOCAL.suspect_intervals
DOWN = LOCAL.interval * LOCAL.down_intervals
# Each host has ports of its own: the same numbers serve everywhere.
NATS_PORT, SERVICE_PORT, GATEWAY_PORT, GATEWAY_ADMIN = 4222, 8080, 8000, 8001
AGENT_ADMIN, OUTBOUND = 15000, 15001
RATE = 100.0
LOAD_SCRIPT = str(Path(__file__).resolve().parent.parent / "load.py")


@dataclass
class Topology:
    hosts: Hosts
    env: dict[str, str]

    def mesh(self, host: str, label: str, *args: str) -> Child:
        return self.hosts[host].start(label, [sys.executable, "-m", "mesh", *args], self.env)

    def instance(self, host: str, service: str, *agent_args: str) -> None:
        """A demo service on the host's address and its agent (admin on the host's loopback)."""
        address = self.hosts[host].address
        self.mesh(
            host,
            f"{service}-{host}",
            "demo-service",
            "--service",
            service,
            "--host",
            address,
            "--port",
            str(SERVICE_PORT),
            "--instance-id",
            f"{service}-{host}",
        )
        self.mesh(
            host,
            f"agent-{host}",
            "agent",
            "--service",
            service,
            "--host",
            address,
            "--port",
            str(SERVICE_PORT),
            "--admin-port",
            str(AGENT_ADMIN),
            "--instance-id",
            f"{service}-{host}",
            *agent_args,
        )

    def gateway(self, host: str) -> Child:
        return self.mesh(
            host,
            f"gateway-{host}",
            "gateway",
            "--workers",
            "1",
            "--listen",
            f"{self.hosts[host].address}:{GATEWAY_PORT}",
            "--admin",
            f"127.0.0.1:{GATEWAY_ADMIN}",
        )

    def load(self, label: str, *args: str, duration: float) -> Child:
        """A load client on the client host (see `sending`)."""
        argv = [sys.executable, LOAD_SCRIPT, "--rate", str(RATE), "--duration", str(duration)]
        return self.hosts["client"].start(label, [*argv, *args])

    def url(self, host: str) -> str:
        return f"http://{self.hosts[host].address}:{GATEWAY_PORT}/hello/hosts"


def order(host: Host, path: str) -> None:
    """POST a demo order (`/_demo/delay?ms=200`) to the host's demo service, from inside."""
    url = f"http://{host.address}:{SERVICE_PORT}{path}"
    script = f"import urllib.request as u; u.urlopen(u.Request({url!r}, method='POST'), timeout=5)"
    assert host.start(f"order-{host.name}", [sys.executable, "-c", script]).wait(10) == 0


def routable(host: Host, admin_port: int, *instances: str) -> bool:
    """Whether every one of `instances` is routable in the view of the node whose admin
    port is given."""
    members = host.get_json(admin_port, "/mesh/members")["members"]
    return set(instances) <= {m["instance"] for m in members if m["routable"]}


def listed(host: Host, admin_port: int, instance: str) -> bool:
    """Whether `instance` is in that view and not down or gone."""
    members = host.get_json(admin_port, "/mesh/members")["members"]
    return any(m["instance"] == instance and m["state"] not in ("down", "left") for m in members)


def quietly(check: Callable[[], object]) -> bool:
    """`check()`, with an admin port that does not answer (yet) counting as False."""
    try:
        return bool(check())
    except (OSError, ValueError, KeyError):
        return False


def everywhere(
    observers: list[tuple[Host, int]], holds: Callable[[Host, int], bool], timeout: float
) -> float:
    """Seconds until `holds(host, admin_port)` is true for every observer at once."""

    def held() -> bool:
        return all(quietly(lambda o=o: holds(*o)) for o in observers)  # type: ignore[misc]

    return wait_for(held, timeout)


def sending(*loads: Child) -> None:
    """Returns once every load client has begun sending."""
    for load in loads:
        assert load.log is not None
        wait_for(lambda log=load.log: log.exists() and b"started" in log.read_bytes(), 15)


def tally(load: Child, timeout: float = 30.0) -> dict[str, Any]:
    """The JSON the load script printed when it ended."""
    load.wait(timeout)
    assert load.log is not None
    return dict(json.loads(load.log.read_text().strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def topology(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    try:
        check_available()
    except Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    sweep()
    workdir = tmp_path_factory.mktemp("hosts")
    with Hosts(["nats", "gw1", "gw2", "a", "b", "c", "client"], workdir) as hosts:
        nats = hosts["nats"]
        env = {
            "MESH_NATS_URL": f"nats://{nats.address}:{NATS_PORT}",
            "MESH_PRESET": "local",
            "PYTHONUNBUFFERED": "1",
        }
        # Bound to every address of its host only: that namespace's loopback and link.
        nats.start(
            "nats-server",
            [
                nats_binary,
                "-a",
                "0.0.0.0",
                "-p",
                str(NATS_PORT),
                "-js",
                "-sd",
                str(workdir / "nats"),
            ],
        )
        wait_for(lambda: quietly(lambda: nats.connect(NATS_PORT).recv(5) == b"INFO "), 10)
        topology = Topology(hosts, env)
        topology.gateway("gw1")
        topology.instance("a", "hello")
        topology.instance("b", "hello")
        outbound = f"{hosts['c'].address}:{OUTBOUND}"  # the client host calls through it
        topology.instance("c", "shop", "--outbound", outbound)
        c = hosts["c"]
        wait_for(
            lambda: quietly(lambda: c.get_json(AGENT_ADMIN, "/healthz")["outbound"] == "serving"),
            10,
        )
        # shop's agent follows hello from its first call (no node hears what it does not
        # call): one call from its host, answered once hello's instances are up.
        call = (
            "import time, urllib.request as u\n"
            f"o = u.build_opener(u.ProxyHandler({{'http': 'http://{outbound}'}}))\n"
            "end = time.monotonic() + 20\n"
            "while True:\n"
            "    try:\n"
            "        o.open('http://hello/warm', timeout=2); break\n"
            "    except OSError:\n"
            "        assert time.monotonic() < end; time.sleep(0.1)\n"
        )
        assert c.start("first-call", [sys.executable, "-c", call]).wait(25) == 0
        observers = [(hosts["gw1"], GATEWAY_ADMIN), (c, AGENT_ADMIN)]
        everywhere(observers, lambda h, p: routable(h, p, "hello-a", "hello-b"), 30)
        yield topology


def test_a_partitioned_host_leaves_every_view_and_returns_without_a_hand(
    topology: Topology,
) -> None:
    hosts = topology.hosts
    gw1, b, c = hosts["gw1"], hosts["b"], hosts["c"]
    # The nodes that route to hello: hello's own agents do not call it, so do not follow it.
    observers = [(gw1, GATEWAY_ADMIN), (c, AGENT_ADMIN)]
    loads = [
        topology.load("load-gw-a", "--url", topology.url("gw1"), duration=10.0),
        topology.load(
            "load-agent-a",
            "--url",
            "http://hello/hosts",
            "--proxy",
            f"http://{c.address}:{OUTBOUND}",
            duration=10.0,
        ),
    ]
    sending(*loads)
    time.sleep(0.3)  # both instances answer some (the timelines are checked below)
    b.partition()
    cut = time.monotonic()
    try:
        everywhere(observers, lambda h, p: not routable(h, p, "hello-b"), SUSPECT + 1.5)
        unroutable = time.monotonic() - cut
        everywhere(observers, lambda h, p: not listed(h, p, "hello-b"), DOWN + 1.5)
        down = time.monotonic() - cut
        time.sleep(0.3)  # the cut outlasts detection: nothing may wait it out
    finally:
        b.heal()
    healed = time.monotonic()
    back = everywhere(observers, lambda h, p: routable(h, p, "hello-b"), 10)
    time.sleep(0.3)  # hello-b takes traffic again
    for load in loads:
        load.signal(signal.SIGTERM)
    results = [tally(load) for load in loads]
    for result in results:
        assert result["failures"] == [], result["failures"][:5]
        assert result["ok"] == result["sent"] > 0
        before = [i for t, i, _ in result["timeline"] if result["started"] + t < cut]
        after = [i for t, i, _ in result["timeline"] if result["started"] + t > healed + back]
        assert "hello-b" in before, "the load began after the cut: nothing was tested"
        assert "hello-b" in after, "hello-b took no traffic after it returned"
    # Silence is counted from the last heartbeat heard, up to an interval before the cut.
    assert unroutable <= SUSPECT + 1.0, f"unroutable everywhere after {unroutable:.2f} s"
    assert down <= DOWN + 1.0, f"down everywhere after {down:.2f} s"
    # Requests that were waiting on hello-b went elsewhere once it left the views, not
    # when the link came back (TCP would have delivered them then). One whose answer the
    # cut split after its head had reached the client cannot move: at most one may wait.
    waited = [
        f"{took:.2f} s, sent {r['started'] + sent - cut:+.2f} s from the cut, by {who or '-'}"
        for r in results
        for took, sent, who in r["slowest"]
        if r["started"] + sent < cut + unroutable and r["started"] + sent + took >= healed
    ]
    assert len(waited) <= 1, f"requests answered only once the link was back: {waited}"
    slowest = max(took for r in results for took, *_ in r["slowest"])
    print(
        f"\npartition: unroutable everywhere after {unroutable:.2f} s, down after {down:.2f} s; "
        f"back everywhere {back:.2f} s after the link returned; "
        f"{sum(r['sent'] for r in results)} requests, 0 failed (slowest {slowest:.2f} s, "
        f"cut {healed - cut:.2f} s)"
    )


def test_b_a_gateway_added_and_removed_under_load_fails_nothing(topology: Topology) -> None:
    hosts = topology.hosts
    gw2 = hosts["gw2"]
    for host in ("a", "b"):  # requests take a while: some are in flight when gw2 goes
        order(hosts[host], "/_demo/delay?ms=200")
    both = ("--url", topology.url("gw1"), "--url", topology.url("gw2"))
    load = topology.load("load-gateways", *both, duration=30.0)  # ends on SIGTERM
    sending(load)
    gateway = topology.gateway("gw2")  # until it listens, clients meet a refusal: to gw1
    ready = wait_for(lambda: quietly(lambda: gw2.get_json(GATEWAY_ADMIN, "/healthz")), 15)
    # Its admin port answers once it serves: by then it knows every instance (no 503s).
    assert routable(gw2, GATEWAY_ADMIN, "hello-a", "hello-b")
    time.sleep(1.0)  # it takes its share
    gateway.signal(signal.SIGTERM)
    removed = time.monotonic()
    assert gateway.wait(15) == 0
    drained = time.monotonic() - removed
    assert "connections cut" not in (gateway.log.read_text() if gateway.log else "")
    time.sleep(0.5)  # gw1 alone again
    load.signal(signal.SIGTERM)
    result = tally(load)
    for host in ("a", "b"):
        order(hosts[host], "/_demo/reset")
    assert result["failures"] == [], result["failures"][:5]
    assert result["ok"] == result["sent"] > 0
    served = result["by_url"]
    assert served.get(topology.url("gw2"), 0) > 0.2 * RATE, served  # it served while up
    assert result["refused"] > 0, "no request met gw2 away: the test saw no change"
    print(
        f"\ngateway added (ready after {ready:.2f} s) and removed (drained in {drained:.2f} s): "
        f"{result['sent']} requests, 0 failed, {result['refused']} went to the other gateway "
        f"after a refused connect; served {served}"
    )
