"""The gateway as a process: worker processes sharing the port, graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path

from mesh_procs import Client, Mesh, routable, wait_for

from mesh.playground.natsserver import NatsServer


def start(mesh: Mesh, workers: int):
    service = mesh.service("hello-1")
    mesh.agent(service)
    gateway = mesh.gateway(workers=workers)
    wait_for(lambda: len(routable(gateway.admin_port)) == 1, timeout=20)
    return service, gateway


def test_two_workers_share_the_port_and_the_admin_port_merges_their_metrics(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        _, gateway = start(mesh, workers=2)

        def both_workers_know_hello() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{gateway.admin_port}/metrics"
                ) as page:
                    text = page.read().decode()
            except OSError:
                return False
            return all(
                f'mesh_members{{service="hello",state="alive",worker="{w}"}} 1.0' in text
                for w in "01"
            )

        wait_for(both_workers_know_hello, timeout=20)
        for _ in range(40):  # a new connection each time: the kernel spreads them
            client = Client(gateway.port)
            assert client.request("GET", "/hello/")[0] == 200
            client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/metrics") as page:
            text = page.read().decode()
        served = {
            line.split('worker="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mesh_requests_total{") and 'service="hello"' in line
        }
        assert set(served) == {"0", "1"}, served
        assert sum(served.values()) == 40
        gateway.signal(signal.SIGTERM)
        assert gateway.wait(20) == 0
    finally:
        mesh.close()


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        service, gateway = start(mesh, workers=1)
        slow = urllib.request.Request(
            f"http://127.0.0.1:{service.port}/_demo/delay?ms=1500", method="POST"
        )
        urllib.request.urlopen(slow).read()
        result: dict[str, object] = {}

        def in_flight() -> None:
            status, headers, body = Client(gateway.port, timeout=10).request("GET", "/hello/slow")
            result.update(status=status, connection=headers.get("connection"), body=body)

        worker = threading.Thread(target=in_flight)
        worker.start()
        threading.Event().wait(0.5)  # the request is now waiting on the slow instance
        gateway.signal(signal.SIGTERM)
        worker.join(10)
        assert result["status"] == 200
        assert json.loads(result["body"])["path"] == "/slow"
        assert result["connection"] == "close"
        assert gateway.wait(15) == 0
    finally:
        mesh.close()
