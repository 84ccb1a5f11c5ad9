"""A service calls another by name through its agent's outbound proxy."""

from __future__ import annotations

import json
from pathlib import Path

from mesh_procs import Client, Mesh, outbound_serving, routable, wait_for

from mesh.playground.natsserver import NatsServer


def test_calls_by_name_as_http_proxy_and_by_host_header(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    mesh = Mesh(nats_server.url, tmp_path)
    try:
        orders = mesh.service("orders-1", service="orders")
        mesh.agent(orders, "orders")
        caller = mesh.service("shop-1", service="shop")
        agent = mesh.agent(caller, "shop")
        wait_for(lambda: outbound_serving(agent), 10)  # it serves once the policies are in
        client = Client(agent.port)
        # As an HTTP proxy (HTTP_PROXY=http://127.0.0.1:<outbound>): absolute-form target.
        # The first call makes shop's agent follow orders (until then it hears none of it);
        # it succeeds once orders' agent announces the instance healthy.
        address = f"127.0.0.1:{orders.port}"
        wait_for(lambda: client.request("GET", "http://orders/list?page=2")[0] == 200, 20)
        assert address in routable(agent.admin_port, "orders")
        status, _, body = client.request("GET", "http://orders/list?page=2")
        assert status == 200
        assert json.loads(body)["instance"] == "orders-1"
        assert json.loads(body)["path"] == "/list?page=2"
        # By Host header.
        status, _, body = client.request("POST", "/new", body=b"{}", headers={"Host": "orders"})
        assert status == 200
        assert json.loads(body)["received_bytes"] == 2
        # An unknown name is a proxy-made answer, not a hang: the call that follows it
        # waits MESH_INTEREST_WAIT and says 503 UH (its records might be late); the next
        # call, to a name followed and still unheard of, says it is no service.
        status, headers, _ = client.request("GET", "http://nosuch/")
        assert (status, headers["x-mesh-flags"]) == (503, "UH")
        status, headers, _ = client.request("GET", "http://nosuch/")
        assert (status, headers["x-mesh-flags"]) == (404, "NR")
        client.close()
    finally:
        mesh.close()
