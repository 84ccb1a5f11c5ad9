"""A real Prometheus scrapes a gateway and two agents under a known load.

A gateway with workers is tested in test_gateway_process.py (its admin port's totals
exact, its merged page clean for promtool): three processes more to start here.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql
import pytest
from hello import Hello
from load import Load
from mesh_procs import Mesh, Proc, wait_for

from mesh.node.children import Child, stop
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer

# Its own NATS (module_nats) and Prometheus: nobody else's heartbeats or series.
pytestmark = pytest.mark.e2e

WINDOW = 30  # seconds, the rate(mesh_requests_total[30s])
# rate() extrapolates a series that starts or ends inside its window by up to half a
# scrape interval at its start and one at its end, at the series' average slope: with
# series a few seconds long (warm-up, load, one more scrape) that is 1.5 * SCRAPE /
# (LOAD_SECONDS + 2 * SCRAPE) at most, under 5%, and the rate is seen within 10%.
SCRAPE = 0.1  # seconds
LOAD_SECONDS = 3.0
# Requests per second through the gateway, and through each agent's outbound proxy.
GATEWAY_RATE, AGENT_RATE = 100.0, 25.0
FAIL_EVERY = 4  # hello-2's answers: every fourth is a 503
# Agent 2's admin port listens on another loopback address: MESH_AGENT_ADMIN_HOST acts.
AGENT_2_ADMIN_HOST = "127.0.0.2"


@dataclass
class Scraped:
    """The mesh after the load, and what was sent."""

    prometheus: int  # its port
    gateway: Proc
    agent_pages: list[str]  # the agents' /metrics URLs
    sent: int
    gateway_counted: float  # what the gateway's /metrics counted during the load

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prometheus}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        [sample] = self.query(expr)
        return float(sample["value"][1])


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def requests_counted(url: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page(url).splitlines()
        if line.startswith("mesh_requests_total")
    )


def get(url: str, proxy: str | None = None) -> int:
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=2) as answer:
            return int(answer.status)
    except OSError:
        return 0


def prometheus_config(path: Path, gateway: int, agents: list[str]) -> None:
    path.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "global": {
                    "scrape_interval": f"{int(SCRAPE * 1000)}ms",
                    "scrape_timeout": f"{int(SCRAPE * 1000)}ms",  # a late scrape is skipped
                },
                "scrape_configs": [
                    {
                        "job_name": "gateway",
                        "static_configs": [{"targets": [f"127.0.0.1:{gateway}"]}],
                    },
                    {
                        "job_name": "agent",
                        "static_configs": [{"targets": agents}],
                    },
                ],
            }
        )
    )


HELLO_ALIVE = 'service="hello",state="alive"'


def knows_both(url: str) -> bool:
    """Every process behind the /metrics page at `url` has both hello instances alive."""
    try:
        lines = page(url).splitlines()
    except OSError:
        return False
    alive = [
        line for line in lines if line.startswith('mesh_members{service="hello",state="alive"')
    ]
    return bool(alive) and all(line.endswith(" 2.0") for line in alive)


def everyone_scraped_after(scraped: Scraped, moment: float) -> bool:
    """Prometheus scraped all three targets, successfully, since `moment` (wall clock)."""
    try:
        up = scraped.query("up")
        stamps = scraped.query("timestamp(up)")  # of each sample: a selector's, not the query's
    except OSError:  # Prometheus not serving yet
        return False
    return (
        [s["value"][1] for s in up] == ["1"] * 3
        and len(stamps) == 3
        and all(float(s["value"][1]) > moment for s in stamps)
    )


@pytest.fixture(scope="module")
def scraped(module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    work = tmp_path_factory.mktemp("prometheus")
    mesh = Mesh(module_nats.url, work)
    gateway = mesh.gateway()
    hello_1, hello_2 = Hello("hello-1"), Hello("hello-2")
    agent_1 = mesh.agent(hello_1)
    mesh.env["MESH_AGENT_ADMIN_HOST"] = AGENT_2_ADMIN_HOST
    agent_2 = mesh.agent(hello_2)
    del mesh.env["MESH_AGENT_ADMIN_HOST"]
    agent_admins = [f"127.0.0.1:{agent_1.admin_port}", f"{AGENT_2_ADMIN_HOST}:{agent_2.admin_port}"]
    agent_pages = [f"http://{admin}/metrics" for admin in agent_admins]
    port = free_port()
    prometheus_config(work / "prometheus.yml", gateway.admin_port, agent_admins)
    binary = shutil.which("prometheus")
    assert binary is not None, "no prometheus: `make test-tools` installs Debian's"
    server = Child(
        "prometheus",
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log=work / "prometheus.log",
    )
    server.start()
    try:
        gateway_url = f"http://127.0.0.1:{gateway.port}/hello/"
        proxies = [f"http://127.0.0.1:{agent.port}" for agent in (agent_1, agent_2)]
        # Every path answers: the gateway and both agents know both instances (an agent
        # follows hello from its first call to it).
        # Polled gently: every poll costs the processes that are still starting.
        gateway_page = f"http://127.0.0.1:{gateway.admin_port}/metrics"
        wait_for(lambda: knows_both(gateway_page), timeout=20, every=0.2)
        for proxy, url in zip(proxies, agent_pages, strict=True):
            wait_for(lambda proxy=proxy: get("http://hello/", proxy) == 200, timeout=20, every=0.2)
            wait_for(lambda url=url: knows_both(url), timeout=20, every=0.2)
        assert get(gateway_url) == 200
        scraped = Scraped(port, gateway, agent_pages, 0, 0.0)
        # The warm-up's requests are in every scrape from now on: the load's are the only
        # increase that rate() sees.
        warmed = time.time()
        wait_for(lambda: everyone_scraped_after(scraped, warmed), timeout=10, every=0.05)
        before = requests_counted(gateway_page)
        # From now on hello-2 fails now and then, all through the load: each failure is
        # retried on hello-1, and too seldom in a row to get hello-2 ejected. (A burst
        # would be over before the next scrape: the first sample of a new series would
        # hold it all, and rate() sees no increase.)
        hello_2.fail_every = FAIL_EVERY
        loads = [Load(gateway_url, rate=GATEWAY_RATE, duration=LOAD_SECONDS, concurrency=16)]
        loads += [
            Load("http://hello/", rate=AGENT_RATE, duration=LOAD_SECONDS, proxy=p, concurrency=8)
            for p in proxies
        ]
        for load in loads:
            load.start()
        tallies = [load.join() for load in loads]
        done = time.time()
        scraped.sent = sum(t.sent for t in tallies)
        assert scraped.sent == int((GATEWAY_RATE + 2 * AGENT_RATE) * LOAD_SECONDS)
        assert all(not t.failures for t in tallies), [t.failures[:3] for t in tallies]
        scraped.gateway_counted = requests_counted(gateway_page) - before
        wait_for(lambda: everyone_scraped_after(scraped, done), timeout=10, every=0.05)
        yield scraped
    finally:
        stop([[server]], grace=2.0)
        mesh.close()
        hello_1.close()
        hello_2.close()


def panel_expr(title: str) -> str:
    """The dashboard's query for the panel `title`: the test asks what operators will."""
    [panel] = [p for p in promql.dashboard()["panels"] if p["title"] == title]
    [target] = panel["targets"]
    return str(target["expr"])


def test_prometheus_sees_the_rate_sent_and_the_injected_failure(scraped: Scraped) -> None:
    # The gateway counted each of its requests once.
    assert scraped.gateway_counted == GATEWAY_RATE * LOAD_SECONDS
    # The window covers the whole load and nothing else was sent: the rate over it is
    # what was sent divided by its length, whatever part of it the load filled.
    measured = scraped.value(f"sum(rate(mesh_requests_total[{WINDOW}s]))")
    expected = scraped.sent / WINDOW
    assert abs(measured - expected) <= 0.1 * expected, (measured, expected)
    # Each job's share too: the agents' outbound proxies counted theirs.
    by_job = {
        s["metric"]["job"]: float(s["value"][1])
        for s in scraped.query(f"sum by (job) (rate(mesh_requests_total[{WINDOW}s]))")
    }
    expected_agents = 2 * AGENT_RATE * LOAD_SECONDS / WINDOW
    assert abs(by_job["agent"] - expected_agents) <= 0.1 * expected_agents, by_job
    # The failing instance shows in the error ratio of each instance's attempts; the
    # healthy one does not.
    failed = scraped.query(promql.for_prometheus(panel_expr("Failed attempts per instance")))
    ratios = {s["metric"]["mesh_instance"]: float(s["value"][1]) for s in failed}
    assert ratios["hello-1-agent"] == 0.0, ratios
    assert 0.5 / FAIL_EVERY < ratios["hello-2-agent"] < 1.5 / FAIL_EVERY, ratios


def test_promtool_finds_every_metrics_page_clean(scraped: Scraped) -> None:
    gateway = f"http://127.0.0.1:{scraped.gateway.admin_port}/metrics"
    for url in [gateway, *scraped.agent_pages]:
        text = page(url)
        assert "mesh_requests_total{" in text, url  # after the load: families have samples
        assert promql.promtool_problems(text) == "", url


def test_the_grafana_dashboard_names_exported_metrics_and_its_queries_run(
    scraped: Scraped,
) -> None:
    exported = set()
    for url in [f"http://127.0.0.1:{scraped.gateway.admin_port}/metrics", *scraped.agent_pages]:
        exported |= promql.exported(page(url))
    for expr in promql.exprs(promql.dashboard()):
        assert promql.metric_names(expr) <= exported, expr
        scraped.query(promql.for_prometheus(expr))  # valid PromQL, as Grafana sends it
    # The golden-signal panels have data after the load.
    board = promql.dashboard()
    for panel in board["panels"]:
        if panel["title"] in {"Request rate", "Success rate", "Latency p50 / p99"}:
            for target in panel["targets"]:
                assert scraped.query(promql.for_prometheus(target["expr"])), panel["title"]
