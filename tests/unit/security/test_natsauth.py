"""NATS roles: each may publish what its process sends and nothing in another's name."""

from __future__ import annotations

import pytest
from memory_bus import matches

from mesh import subjects
from mesh.errors import InvalidName
from mesh.security import natsauth
from mesh.security.natsauth import Role


def may_publish(role: Role, subject: str) -> bool:
    return any(matches(pattern, subject) for pattern in role.publish)


def may_subscribe(role: Role, subject: str) -> bool:
    return any(matches(pattern, subject) for pattern in role.subscribe)


ORDERS = natsauth.agent("orders")
GATEWAY = natsauth.gateway("edge")

# What an agent of orders sends (mesh/membership, mesh/node/forwarding, mesh/bus/events,
# mesh/forwarding/policy_feed, the certificate request), and the JetStream API calls
# nats-py makes to watch the policy bucket.
AGENT_SENDS = [
    subjects.heartbeat("orders", "o-1"),
    subjects.leave("orders", "o-1"),
    subjects.evidence("orders", "payments", "p-1"),  # on the services it calls
    subjects.event("instance.down", "orders"),
    subjects.event("policy.applied", "payments"),  # acks name the policy
    subjects.event("policy.rejected", "web-routes"),
    subjects.SYNC,
    subjects.sync("payments"),  # the nodes of a service it calls, asked for their records
    subjects.ca_sign("orders"),
    subjects.tapped("ab12cd34", "orders"),  # a tap's records, under its own service
    "$JS.API.STREAM.INFO.KV_mesh_policies",
    "$JS.API.CONSUMER.CREATE.KV_mesh_policies.abc.$KV.mesh_policies.>",
    "$JS.API.CONSUMER.DELETE.KV_mesh_policies.abc",
    "$JS.FC.KV_mesh_policies.abc.1",
]
# What it may not: another service's voice, the policies, the stream, anyone's replies.
AGENT_MAY_NOT = [
    subjects.heartbeat("payments", "p-1"),
    subjects.leave("payments", "p-1"),
    subjects.evidence("payments", "orders", "o-1"),
    subjects.event("instance.down", "payments"),
    "mesh.v1.events.policy.other.payments",  # of the policy family, only acks
    subjects.ca_sign("payments"),
    subjects.tapped("ab12cd34", "payments"),
    subjects.TAP,  # only a monitor opens taps
    "mesh.v1.sync.payments.x",
    "mesh.v1.hb.orders.o-1.x",
    "$KV.mesh_policies.service.orders",
    "$JS.API.STREAM.UPDATE.MESH_EVENTS",
    "$JS.API.STREAM.CREATE.KV_mesh_policies",
    "$JS.API.STREAM.DELETE.KV_mesh_policies",
    "$JS.API.STREAM.PURGE.KV_mesh_policies",
    "$JS.API.CONSUMER.CREATE.MESH_EVENTS",
    "_INBOX.someone-else.1",
]


@pytest.mark.parametrize("subject", AGENT_SENDS)
def test_an_agent_may_send_what_it_sends(subject: str) -> None:
    assert may_publish(ORDERS, subject)


@pytest.mark.parametrize("subject", AGENT_MAY_NOT)
def test_an_agent_may_not_speak_for_others_or_write_policies(subject: str) -> None:
    assert not may_publish(ORDERS, subject)


def test_an_agent_hears_the_membership_and_evidence_but_not_certificate_requests() -> None:
    for subject in (subjects.heartbeat("payments", "p"), subjects.evidence("gw", "a", "b")):
        assert may_subscribe(ORDERS, subject)
    assert may_subscribe(ORDERS, subjects.SYNC)
    assert may_subscribe(ORDERS, subjects.sync("orders"))  # asked as a service it calls
    assert not may_subscribe(ORDERS, subjects.sync("payments"))
    assert not may_subscribe(ORDERS, subjects.ca_sign("payments"))
    assert not may_subscribe(ORDERS, subjects.event("instance.down", "payments"))


def test_a_gateway_speaks_for_itself_and_reports_every_event() -> None:
    assert may_publish(GATEWAY, subjects.heartbeat("edge", "edge-1-w0"))
    assert may_publish(GATEWAY, subjects.sync("orders"))  # following its routes' services
    assert may_subscribe(GATEWAY, subjects.sync("edge"))
    assert not may_subscribe(GATEWAY, subjects.sync("orders"))
    assert may_publish(GATEWAY, subjects.evidence("edge", "orders", "o-1"))
    assert may_publish(GATEWAY, subjects.event("instance.down", "orders"))
    assert not may_publish(GATEWAY, subjects.heartbeat("orders", "o-1"))
    assert not may_publish(GATEWAY, subjects.evidence("orders", "payments", "p-1"))
    assert not may_publish(GATEWAY, "$KV.mesh_policies.route.web")
    assert not may_publish(GATEWAY, "$JS.API.STREAM.CREATE.MESH_EVENTS")
    assert not may_publish(GATEWAY, "$JS.API.STREAM.UPDATE.MESH_EVENTS")
    assert may_publish(GATEWAY, "$JS.API.STREAM.INFO.MESH_EVENTS")
    # Its dashboard replays the event stream: reading it, never deleting from it.
    assert may_publish(GATEWAY, "$JS.API.CONSUMER.CREATE.MESH_EVENTS.x.mesh.v1.events.>")
    assert not may_publish(GATEWAY, "$JS.API.STREAM.PURGE.MESH_EVENTS")
    assert not may_publish(GATEWAY, "$JS.API.STREAM.MSG.DELETE.MESH_EVENTS")
    # With mTLS it calls agents as itself: a certificate for its own name, no other.
    assert may_publish(GATEWAY, subjects.ca_sign("edge"))
    assert not may_publish(GATEWAY, subjects.ca_sign("orders"))


def test_a_monitor_reads_and_only_asks_for_heartbeats_explanations_and_taps() -> None:
    monitor = natsauth.monitor()
    asks = [subjects.SYNC, subjects.EXPLAIN, subjects.EXPLAIN + ".>", subjects.TAP]
    assert [s for s in monitor.publish if s.startswith("mesh.")] == asks
    assert may_publish(monitor, "$JS.API.CONSUMER.CREATE.MESH_EVENTS.x.mesh.v1.events.>")
    assert not may_publish(monitor, "$KV.mesh_policies.route.web")
    assert may_subscribe(monitor, subjects.event("instance.down", "orders"))


def test_the_ca_answers_certificate_requests_and_publishes_nothing_else() -> None:
    ca = natsauth.ca()
    assert ca.allow_responses
    assert ca.publish == ()
    assert may_subscribe(ca, subjects.ca_sign("orders"))
    assert '"publish": {"deny": [">"]}' in natsauth.authorization([(ca, {"nkey": "UX"})])


def test_only_the_admin_may_write_policies() -> None:
    admin = natsauth.admin()
    assert may_publish(admin, "$KV.mesh_policies.route.web")
    others = [ORDERS, GATEWAY, natsauth.monitor(), natsauth.ca()]
    assert not any(may_publish(role, "$KV.mesh_policies.route.web") for role in others)


def test_the_authorization_block_quotes_every_subject() -> None:
    text = natsauth.authorization(
        [(ORDERS, {"nkey": "UABC"}), (natsauth.admin(), {"user": "a", "password": "p"})]
    )
    assert '"nkey": "UABC"' in text
    assert '"$JS.API.STREAM.INFO.KV_mesh_policies"' in text  # quoted: never a variable
    assert '"user": "a", "password": "p"' in text


@pytest.mark.parametrize("build", [natsauth.agent, natsauth.gateway])
def test_a_name_that_could_widen_a_permission_is_refused(build: object) -> None:
    with pytest.raises(InvalidName):
        build(">")  # type: ignore[operator]
    with pytest.raises(InvalidName):
        build("a.*")  # type: ignore[operator]


def test_gateways_and_agents_answer_explain_only_in_their_own_name() -> None:
    monitor = natsauth.monitor()
    for subject in (
        subjects.EXPLAIN,
        subjects.explain("orders"),
        subjects.explain("orders", "o-1"),
    ):
        assert may_publish(monitor, subject)
    assert may_subscribe(GATEWAY, subjects.EXPLAIN)  # any gateway: the default question
    assert may_subscribe(GATEWAY, subjects.explain("edge", "edge-1-w0"))
    assert may_subscribe(ORDERS, subjects.explain("orders"))
    assert may_subscribe(ORDERS, subjects.explain("orders", "o-1"))
    assert GATEWAY.allow_responses
    assert ORDERS.allow_responses
    # No node hears another's questions: it could answer them with made-up state.
    assert not may_subscribe(ORDERS, subjects.EXPLAIN)
    assert not may_subscribe(ORDERS, subjects.explain("payments", "p-1"))
    assert not may_subscribe(GATEWAY, subjects.explain("orders"))
    # Nor does a node ask: explaining is the monitor's and the admin's.
    assert not may_publish(ORDERS, subjects.EXPLAIN)
    assert not may_publish(GATEWAY, subjects.explain("orders"))


def test_tap_records_go_out_under_the_senders_name_and_only_the_monitor_reads_them() -> None:
    """Records hold request paths: no agent or gateway may read another's (or its own)."""
    for node in (ORDERS, GATEWAY):
        assert may_subscribe(node, subjects.TAP)
        assert not may_subscribe(node, subjects.tapped("ab12cd34", "orders"))
        assert not may_publish(node, subjects.TAP)
    assert may_publish(GATEWAY, subjects.tapped("ab12cd34", "edge"))
    assert not may_publish(GATEWAY, subjects.tapped("ab12cd34", "orders"))
    assert may_subscribe(natsauth.monitor(), subjects.tapped("ab12cd34", "orders"))
    assert not may_subscribe(natsauth.ca(), subjects.tapped("ab12cd34", "orders"))


def test_presence_hears_the_mesh_accounts_clients_come_and_go_and_asks_only_their_pings() -> None:
    presence = natsauth.presence()
    assert presence.account == subjects.SYSTEM_ACCOUNT
    assert presence.publish == (subjects.SERVER_SETTINGS,)  # how soon silence is closed
    assert not may_publish(presence, "$SYS.REQ.SERVER.PING.CONNZ")  # who is connected
    assert not may_publish(presence, "$SYS.REQ.ACCOUNT.MESH.CONNZ")
    assert may_subscribe(presence, "$SYS.ACCOUNT.MESH.DISCONNECT")
    assert may_subscribe(presence, "$SYS.ACCOUNT.MESH.CONNECT")
    assert not may_subscribe(presence, "$SYS.ACCOUNT.SYS.DISCONNECT")  # its own account's
    assert not may_subscribe(presence, "$SYS.REQ.SERVER.PING")
    assert not may_subscribe(presence, subjects.heartbeat("orders", "o-1"))


def test_only_gateways_say_they_cover_and_every_node_hears_it() -> None:
    assert may_publish(GATEWAY, subjects.COVERAGE)
    assert not may_publish(ORDERS, subjects.COVERAGE)
    assert not may_publish(natsauth.monitor(), subjects.COVERAGE)
    assert may_subscribe(ORDERS, subjects.COVERAGE)


def test_only_gateways_say_gone_and_every_node_hears_it() -> None:
    gone = subjects.gone("orders", "o-1")
    assert may_publish(GATEWAY, gone)
    assert not may_publish(ORDERS, gone)
    assert not may_publish(natsauth.monitor(), gone)
    assert may_subscribe(ORDERS, gone)
    assert may_subscribe(GATEWAY, gone)


def test_each_user_goes_into_its_roles_account() -> None:
    text = natsauth.authorization(
        [(ORDERS, {"nkey": "UORDERS"}), (natsauth.presence(), {"nkey": "UPRESENCE"})],
        no_auth_user="mesh",
    )
    mesh, system = text.split("  SYS {")
    assert '"UORDERS"' in mesh
    assert '"UPRESENCE"' not in mesh
    assert '"UPRESENCE"' in system
    assert '"UORDERS"' not in system
    assert "jetstream: enabled" in mesh
    assert "jetstream" not in system
    assert "system_account: SYS" in text
    assert 'no_auth_user: "mesh"' in text
