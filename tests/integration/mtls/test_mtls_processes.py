"""mTLS as an operator runs it: `mesh ca init`, `mesh ca serve`, agents with MESH_MTLS set."""

from __future__ import annotations

import json
from pathlib import Path

from mesh_cli import mesh_command, policy
from mesh_procs import (
    Client,
    Mesh,
    Proc,
    get_json,
    members,
    outbound_serving,
    routable,
    wait_for,
)

from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer

PAYMENTS = """kind: Service
name: payments
"""


def test_agents_call_each_other_over_mtls_with_access_rules(
    module_nats: NatsServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    ca = str(tmp_path / "ca")
    made = mesh_command("ca", "init", "--dir", ca)
    assert made.returncode == 0, made.stderr

    (tmp_path / "payments.yaml").write_text(PAYMENTS)
    assert policy(module_nats.url, "apply", "-f", str(tmp_path / "payments.yaml")).returncode == 0
    mesh = Mesh(
        module_nats.url,
        tmp_path,
        env={"MESH_MTLS": "strict", "MESH_CERT_WAIT": "1", "MESH_PRESET": "local"},
    )
    try:
        # Where no CA answers, an agent cannot get its certificate: it ends, with one line.
        mesh.env["MESH_NATS_URL"] = nats_server.url
        orphan = mesh.spawn(
            "orphan", "agent", "--service", "orphan", "--port", "9", "--outbound", ""
        )
        del mesh.env["MESH_NATS_URL"]
        signer = mesh.spawn("ca", "ca", "serve", "--dir", ca)
        wait_for(lambda: "mesh CA signing" in signer.output(), 10)
        # This test's NATS is open: the signer says what that means.
        assert "anyone who reaches it can ask this CA for any service's identity" in (
            signer.output()
        )
        payments = mesh.service("payments-1", service="payments")
        inbound = free_port()
        mesh.env["MESH_AGENT_INBOUND"] = f"127.0.0.1:{inbound}"
        payments_agent = mesh.agent(payments, "payments")
        # shop's own service is not needed: its agent's outbound proxy is what calls.
        mesh.env["MESH_AGENT_INBOUND"] = f"127.0.0.1:{free_port()}"
        agent = mesh.agent(Proc("shop-1", [], {}, tmp_path / "none", 9, 0), "shop")
        gateway = mesh.gateway()
        wait_for(lambda: outbound_serving(agent), 15)
        client = Client(agent.port)
        client.request("GET", "http://payments/pay")  # from its first call it follows payments
        # The view has payments at its service port; its record adds the inbound port,
        # which is what shop's agent dials.
        wait_for(lambda: routable(agent.admin_port, "payments") != set(), 15)
        [member] = [m for m in members(agent.admin_port) if m["service"] == "payments"]
        assert member["inbound_port"] == inbound
        assert get_json(payments_agent.admin_port, "/healthz")["inbound"] == "serving"
        status, _, body = client.request("GET", "http://payments/pay")
        assert status == 200, body
        assert json.loads(body)["peer"] == "spiffe://natsmesh.local/ns/default/sa/shop"
        # The gateway calls over mTLS too, as `gateway`.
        wait_for(lambda: routable(gateway.admin_port, "payments") != set(), 15)
        edge = Client(gateway.port)
        status, _, body = edge.request("GET", "/payments/pay")
        assert status == 200, body
        assert json.loads(body)["peer"] == "spiffe://natsmesh.local/ns/default/sa/gateway"

        (tmp_path / "payments.yaml").write_text(PAYMENTS + "access:\n  allow_from: [checkout]\n")
        applied = policy(module_nats.url, "apply", "-f", str(tmp_path / "payments.yaml"), "--wait")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        status, headers, body = client.request("GET", "http://payments/pay")
        assert (status, headers["x-mesh-flags"]) == (403, "RBAC"), body
        assert "'shop' may not call 'payments'" in json.loads(body)["detail"]
        assert edge.request("GET", "/payments/pay")[0] == 403
        client.close()
        edge.close()
        assert "denied 'shop' calling payments" in payments_agent.output()
        assert "refused" not in signer.output()
        assert orphan.wait(10) == 2
        [line] = orphan.output().strip().splitlines()[-1:]
        assert line.startswith("mesh agent: no mesh CA answered on mesh.v1.ca.sign.orphan")
    finally:
        mesh.close()
