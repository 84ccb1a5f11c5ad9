"""The control plane on a secured nats-server: TLS, NKey users, per-role subject permissions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from factories import heartbeat
from mesh_cli import Ran, mesh_command
from waiting import until

from mesh import clock, config, subjects, tls
from mesh.bus import Delivery, NatsBus, events, setup
from mesh.bus.kv import KvEntry, KvStore
from mesh.errors import BusRefused, NoResponders
from mesh.forwarding.directory import Directory
from mesh.forwarding.explanation import Explanation, Question
from mesh.forwarding.routing import no_route
from mesh.membership import view as membership
from mesh.membership.announcer import Announcer
from mesh.membership.census import Watch
from mesh.membership.coverage import CoverageWatch
from mesh.membership.discovery import Discovery
from mesh.membership.presence import Presence
from mesh.messages import (
    Event,
    Evidence,
    Gone,
    Load,
    LoadReport,
    ServiceTraffic,
    Sync,
    TapOpen,
    decode,
    encode,
)
from mesh.metrics import Metrics
from mesh.node.explainer import Explainer
from mesh.node.node import Node
from mesh.observe import traffic
from mesh.observe.explain_answer import Vantage
from mesh.observe.loads import Loads
from mesh.playground.natsserver import NatsServer
from mesh.security import natsauth, natscreds, pki
from mesh.timing import PRESETS

PASSWORD = "right-horse-battery"


@dataclass
class Secure:
    server: NatsServer
    out: Path
    creds: dict[str, natscreds.Credentials]

    def settings(self, role: str, **changes: object) -> config.Settings:
        """A role's settings, as its `.env` file gives them, with `changes` on top."""
        values: dict[str, object] = {**self.creds[role].overrides()}
        values.update(nats_url=self.server.url, **changes)
        return config.Settings(**values)  # type: ignore[arg-type]

    def env(self, role: str, **changes: str) -> dict[str, str]:
        """The environment of a `mesh` process of this role."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
        return {**clean, **self.creds[role].env(), "MESH_NATS_URL": self.server.url, **changes}


@pytest.fixture(scope="module")
def secure(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """A nats-server of this module's own, as `mesh nats creds` configures it, plus one
    user/password login (the monitor's permissions) to test passwords with."""
    out = tmp_path_factory.mktemp("secure-nats")
    roles = natscreds.roles(["hello", "billing"], ["gateway"])
    creds = natscreds.write(out, roles, hosts=["127.0.0.1"], now=datetime.now(UTC))
    logins: list[tuple[natsauth.Role, dict[str, str]]] = [
        (role, {"nkey": natscreds.public_key(creds[role.name].seed.read_bytes())}) for role in roles
    ]
    logins.append((natsauth.monitor(), {"user": "watcher", "password": PASSWORD}))
    (out / "auth.conf").write_text(natsauth.authorization(logins))
    server = NatsServer(
        nats_binary, config_file=out / "nats.conf", store_dir=out / "store", tls_first=True
    )
    server.start()
    found = Secure(server, out, creds)
    asyncio.run(setup.set_up(found.settings("admin")))  # what only the admin may create
    yield found
    server.stop()


Connect = Callable[..., Awaitable[NatsBus]]


@pytest.fixture
async def bus_of(secure: Secure) -> AsyncIterator[Connect]:
    """Connects as a role (its settings changed by keywords); closed after the test."""
    buses: list[NatsBus] = []

    async def connect(role: str, **changes: object) -> NatsBus:
        bus = NatsBus(secure.settings(role, **changes), name=f"test-{role}")
        buses.append(bus)
        await bus.start(wait=5.0)
        return bus

    yield connect
    for bus in buses:
        await bus.close()


async def test_an_agent_speaks_only_for_its_own_service(bus_of: Connect) -> None:
    observer = await bus_of("gateway-gateway")
    metrics = Metrics()
    discovery = Discovery(observer, PRESETS["lan"], node="observer", metrics=metrics, events=None)
    await discovery.start()
    heard: list[str] = []

    async def hear(delivery: Delivery) -> None:
        heard.append(delivery.subject)

    await observer.subscribe(f"{subjects.PREFIX}.>", hear)
    await observer.flush(2.0)
    agent = await bus_of("agent-hello")
    refused = [
        subjects.heartbeat("billing", "b1"),
        subjects.leave("billing", "b1"),
        subjects.evidence("billing", "hello", "h1"),  # evidence in another reporter's name
        subjects.event("instance.down", "billing"),
        subjects.ca_sign("billing"),  # a certificate for another service's identity
    ]
    await agent.publish(refused[0], encode(heartbeat("b1", "billing")))
    for subject in refused[1:]:
        await agent.publish(subject, b"{}")
    # Its own subject, but the content names another service: NATS lets it through, the
    # view drops and counts it.
    await agent.publish(subjects.heartbeat("hello", "h1"), encode(heartbeat("h1", "billing")))
    await agent.publish(subjects.heartbeat("hello", "h1"), encode(heartbeat("h1", "hello")))
    await agent.flush(2.0)
    await until(lambda: "h1" in discovery.view.members)
    await observer.flush(2.0)
    assert set(discovery.view.members) == {"h1"}
    assert discovery.view.members["h1"].record.service == "hello"
    assert metrics.bus_invalid == {"hb": 1}
    assert not set(refused) & set(heard)
    await discovery.stop()


async def test_an_agent_reports_evidence_on_any_service_under_its_own_name(
    bus_of: Connect,
) -> None:
    observer = await bus_of("monitor")
    heard: list[str] = []

    async def hear(delivery: Delivery) -> None:
        heard.append(delivery.subject)

    await observer.subscribe(subjects.EVIDENCE, hear)
    await observer.flush(2.0)
    agent = await bus_of("agent-hello")
    seen = Evidence(
        service="billing", instance="b1", observer="h1", reporter="hello", signal="refused"
    )
    subject = subjects.evidence("hello", "billing", "b1")
    await agent.publish(subject, encode(seen))
    await until(lambda: heard == [subject])


async def test_an_agent_asks_the_services_it_calls_and_hears_only_its_own_sync(
    bus_of: Connect,
) -> None:
    """Following a service on use: hello's agent subscribes to billing's heartbeats and
    asks billing's nodes alone (mesh.v1.sync.billing), which billing's agent answers; hello
    may not listen on billing's sync subject."""
    billing = await bus_of("agent-billing")
    announcer = Announcer(billing, heartbeat("b1", "billing", interval=30.0))
    await announcer.start()
    await until(lambda: announcer.sent == 1)  # its one heartbeat for 30 s, before hello
    hello = await bus_of("agent-hello")
    discovery = Discovery(
        hello, PRESETS["lan"], node="h1", metrics=Metrics(), events=None, everything=False
    )
    await discovery.start()
    await discovery.want("billing")
    await until(lambda: "b1" in discovery.view.members)  # billing answered the sync
    assert announcer.sent == 2
    heard: list[str] = []

    async def hear(delivery: Delivery) -> None:
        heard.append(delivery.subject)

    await hello.subscribe(subjects.sync("billing"), hear)  # refused by the server
    await hello.flush(2.0)
    await billing.publish(subjects.sync("billing"), encode(Sync(node="b1")))
    await until(lambda: announcer.sent == 3)
    await hello.flush(2.0)
    assert heard == []
    await discovery.stop()
    await announcer.leave()


async def test_a_monitor_sees_the_load_figures_a_gateway_answers_its_sync_with(
    bus_of: Connect,
) -> None:
    """What `mesh top` does: heartbeats, leaves and load reports heard, a sync asked.
    Load reports go out in a node's own name, and only watchers hear them: an agent may
    not (it routes, and never needs the fleet's figures); a gateway may, for its dashboard."""
    gateway = await bus_of("gateway-gateway")
    record = heartbeat("gw-load", "gateway", role="gateway")
    figures = LoadReport(
        service="gateway",
        instance="gw-load",
        incarnation=record.incarnation,
        load=Load(window=1.0, services={"hello": ServiceTraffic(requests=40, errors=4)}),
    )

    async def answer(delivery: Delivery) -> None:
        assert isinstance(decode(delivery.subject, delivery.data), Sync)
        await gateway.publish(subjects.heartbeat("gateway", "gw-load"), encode(record))
        await gateway.publish(subjects.load("gateway", "gw-load"), encode(figures))

    snooped: list[str] = []
    dashboard: list[str] = []

    async def snoop(delivery: Delivery) -> None:
        snooped.append(delivery.subject)

    async def show(delivery: Delivery) -> None:
        dashboard.append(delivery.subject)

    await gateway.subscribe(subjects.SYNC, answer)
    await gateway.subscribe(subjects.LOADS, show)
    await gateway.flush(2.0)

    snooper = await bus_of("agent-hello")  # a connection of its own, as in the tap test
    await snooper.subscribe(subjects.LOADS, snoop)  # refused by the server
    await snooper.flush(2.0)
    monitor = await bus_of("monitor")
    loads = Loads()
    await loads.listen(monitor)
    watch = Watch(PRESETS["local"])
    await watch.start(monitor, asker="mesh-top")
    await until(lambda: "gw-load" in watch.view.members and "gw-load" in loads.latest)
    [hello] = traffic.services(watch.view.members.values(), loads.latest)
    assert (hello.service, hello.signals.rate, hello.signals.success) == ("hello", 40.0, 0.9)
    agent = await bus_of("agent-hello")
    own = LoadReport(service="hello", instance="h1", incarnation=1, load=Load(window=1.0))
    await agent.publish(subjects.load("hello", "h1"), encode(own))
    impostor = LoadReport(service="billing", instance="b1", incarnation=1, load=Load(window=1.0))
    await agent.publish(subjects.load("billing", "b1"), encode(impostor))  # refused
    await gateway.publish(subjects.load("hello", "h2"), encode(own))  # refused: not its name
    for bus in (agent, gateway):
        await bus.flush(2.0)
    await until(lambda: "h1" in loads.latest and len(dashboard) == 2)
    await monitor.flush(2.0)
    assert (sorted(loads.latest), snooped) == (["gw-load", "h1"], [])
    assert dashboard == [subjects.load("gateway", "gw-load"), subjects.load("hello", "h1")]


async def test_only_the_admin_writes_policies_or_changes_the_event_stream(
    bus_of: Connect,
) -> None:
    admin = await bus_of("admin")
    admin_kv = KvStore(admin, subjects.POLICY_BUCKET)
    await admin_kv.open()
    for role in ("agent-hello", "gateway-gateway", "monitor"):
        bus = await bus_of(role)
        kv = KvStore(bus, subjects.POLICY_BUCKET)
        await kv.open()  # reading is allowed
        key = f"service.{role}"
        # The server's refusal ends the write at once (no answer would ever come).
        with pytest.raises(BusRefused, match=rf'publish to "\$kv\.mesh_policies\.{key}"'):
            await asyncio.wait_for(kv.put(key, b"{}", expected_revision=0), 2)
        if role != "agent-hello":  # an agent may not even read the stream's configuration
            shorter = bus.ensure_stream(
                subjects.EVENTS_STREAM,
                [subjects.EVENTS],
                max_age=1.0,
                max_bytes=1 << 20,
                duplicate_window=1.0,
            )
            with pytest.raises(BusRefused, match=r"stream\.(create|update)\.mesh_events"):
                await asyncio.wait_for(shorter, 2)
        assert await admin_kv.get(key) is None
    stream = await admin.client.jetstream().stream_info(subjects.EVENTS_STREAM)
    assert stream.config.max_age == config.Settings().events_max_age
    assert await admin_kv.put("service.by-admin", b"{}", expected_revision=0) > 0


def test_mesh_policy_apply_without_the_admins_credentials_fails_with_one_line(
    secure: Secure, tmp_path: Path
) -> None:
    route = tmp_path / "r.yaml"
    route.write_text("kind: Route\nname: r\nmatch: {path_prefix: /r}\nto: [{service: hello}]\n")
    route.write_text(route.read_text() + "---\nkind: Service\nname: hello\n")
    # A process of its own: its log lines reach its stderr too (no second line of them).
    line = one_line(mesh("policy", "apply", "-f", str(route), env=secure.env("gateway-gateway")))
    assert line.startswith(
        "mesh policy: only the policy admin may write policies (the admin role of "
        '`mesh nats creds`); NATS refused: nats: permissions violation for publish to "$kv.'
    )


def mesh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def use(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`env`'s settings (and no other) for a `mesh` command run in this process."""
    for name in [n for n in os.environ if n.startswith("MESH_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("MESH_"):
            monkeypatch.setenv(name, value)


def members(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Ran:
    """`mesh members` in this process (a fork costs seconds), with `env`'s settings."""
    use(env, monkeypatch)
    return mesh_command("members", "--wait", "0.1s")


def one_line(result: subprocess.CompletedProcess[str] | Ran) -> str:
    """The command failed with a single line of explanation, no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_wrong_password_fails_with_one_line(
    secure: Secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure.env("monitor", MESH_NATS_USER="watcher", MESH_NATS_PASSWORD="wrong-horse")
    env.pop("MESH_NATS_NKEY_SEED")
    line = one_line(members(env, monkeypatch))
    assert line.startswith("mesh members: NATS refused the credentials (authorization violation)")
    assert "wrong-horse" not in line
    env["MESH_NATS_PASSWORD"] = PASSWORD
    assert members(env, monkeypatch).returncode == 0  # the right one works


def expired_certificate(secure: Secure, tmp_path: Path) -> tuple[Path, Path]:
    """A certificate the right CA signed for the agent's name, expired yesterday."""
    authority = pki.load_authority(secure.out / "nats-ca.pem", secure.out / "nats-ca-key.pem")
    key = pki.new_key()
    cert = pki.issue(
        authority,
        key.public_key(),
        common_name="agent-hello",
        now=datetime.now(UTC) - timedelta(days=3),
        lifetime=timedelta(days=2),
        dns=["agent-hello"],
        server=False,
    )
    cert_path, key_path = tmp_path / "expired.pem", tmp_path / "expired-key.pem"
    pki.write_public(cert_path, pki.cert_pem(cert))
    pki.write_private(key_path, pki.key_pem(key))
    return cert_path, key_path


def test_an_expired_client_certificate_fails_with_one_line(secure: Secure, tmp_path: Path) -> None:
    cert, key = expired_certificate(secure, tmp_path)
    env = secure.env("agent-hello", MESH_NATS_TLS_CERT=str(cert), MESH_NATS_TLS_KEY=str(key))
    line = one_line(
        mesh(
            "agent",
            "--service",
            "hello",
            "--port",
            "9",
            "--admin-port",
            "0",
            "--outbound",
            "",
            env=env,
        )
    )
    assert line.startswith(f"mesh agent: MESH_NATS_TLS_CERT: {cert} expired on ")


async def test_the_server_itself_refuses_an_expired_client_certificate(
    secure: Secure, tmp_path: Path
) -> None:
    """What the check above spares the user: the server would refuse it anyway."""
    cert, key = expired_certificate(secure, tmp_path)
    context = tls.client_context(str(secure.out / "nats-ca.pem"), cert=str(cert), key=str(key))
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever nats-py makes of it
        await nats.connect(
            secure.server.url,
            tls=context,
            tls_handshake_first=True,
            nkeys_seed=str(secure.creds["agent-hello"].seed),
            allow_reconnect=False,
            connect_timeout=2,
        )
    assert "certificate" in str(caught.value).lower() or isinstance(caught.value, OSError)


@pytest.mark.parametrize("scheme", ["nats", "tls"])
def test_a_server_that_does_not_ask_for_tls_never_reads_the_credentials(
    scheme: str, secure: Secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server (or a man in the middle) whose INFO omits tls_required: nats-py alone would
    send CONNECT, password included, in clear; the mesh speaks TLS first and stops there."""
    heard = bytearray()

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"fake","version":"2.10.0","max_payload":1048576}\r\n')
        await writer.drain()
        heard.extend(await reader.read(4096))
        # What a plain nats-server answers a TLS hello (bytes that are no NATS operation).
        writer.write(b"-ERR 'Unknown Protocol Operation'\r\n")
        await writer.drain()
        while chunk := await reader.read(4096):
            heard.extend(chunk)
        writer.close()

    async def run() -> Ran:
        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env = secure.env("monitor", MESH_NATS_USER="watcher", MESH_NATS_PASSWORD=PASSWORD)
        env.update(MESH_NATS_URL=f"{scheme}://127.0.0.1:{port}")
        env.pop("MESH_NATS_NKEY_SEED")
        use(env, monkeypatch)
        try:
            return await asyncio.to_thread(mesh_command, "members", "--wait", "0.1s")
        finally:
            server.close()

    line = one_line(asyncio.run(run()))
    assert line.startswith("mesh members: the NATS server did not answer in TLS ("), line
    assert line.endswith("needs `handshake_first: true`")
    assert heard  # the client spoke (its TLS hello), and never its password
    assert PASSWORD.encode() not in heard
    assert b"CONNECT" not in heard


def test_an_unknown_ca_fails_with_one_line(
    secure: Secure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = pki.new_authority("someone else's CA", datetime.now(UTC), timedelta(days=1))
    pki.write_public(tmp_path / "other-ca.pem", pki.cert_pem(other.cert))
    env = secure.env("monitor", MESH_NATS_TLS_CA=str(tmp_path / "other-ca.pem"))
    line = one_line(members(env, monkeypatch))
    assert line.startswith("mesh members: the NATS server's certificate is not trusted (")
    assert line.endswith("check MESH_NATS_TLS_CA")


def test_no_client_certificate_fails_with_one_line(
    secure: Secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure.env("monitor")
    env.pop("MESH_NATS_TLS_CERT")
    env.pop("MESH_NATS_TLS_KEY")
    line = one_line(members(env, monkeypatch))
    assert line.startswith("mesh members: NATS refused the TLS handshake (")


async def test_a_monitor_taps_nodes_that_answer_in_their_own_name_and_read_no_records(
    bus_of: Connect,
) -> None:
    """Tap records hold request paths: nodes send them, only the monitor reads them."""
    monitor = await bus_of("monitor")
    records: list[str] = []
    announced: list[str] = []
    snooped: list[str] = []

    async def record(delivery: Delivery) -> None:
        records.append(delivery.subject)

    async def announcement(delivery: Delivery) -> None:
        announced.append(delivery.subject)

    async def snoop(delivery: Delivery) -> None:
        snooped.append(delivery.subject)

    await monitor.subscribe(subjects.TAPPED, record)
    agent, edge = await bus_of("agent-hello"), await bus_of("gateway-gateway")
    for node in (agent, edge):
        await node.subscribe(subjects.TAP, announcement)
        await node.flush(2.0)
    # On connections of their own: a refused subscription now and then cost the same
    # connection's next delivery in this test (nats-py 2.16.0, nats-server 2.15.1).
    for role in ("agent-hello", "gateway-gateway"):
        snooper = await bus_of(role)
        await snooper.subscribe(subjects.TAPPED, snoop)  # refused by the server
        await snooper.flush(2.0)
    await monitor.publish(subjects.TAP, encode(TapOpen(id="t1", ttl=5)))
    await until(lambda: len(announced) == 2)
    await agent.publish(subjects.tapped("t1", "hello"), b"{}")
    await agent.publish(subjects.tapped("t1", "billing"), b"{}")  # another's name: refused
    await edge.publish(subjects.tapped("t1", "gateway"), b"{}")
    await edge.publish(subjects.TAP, b"{}")  # only a monitor opens taps
    for bus in (agent, edge, monitor):
        await bus.flush(2.0)
    await until(lambda: len(records) == 2)
    assert sorted(records) == [subjects.tapped("t1", "gateway"), subjects.tapped("t1", "hello")]
    assert (len(announced), snooped) == (2, [])


def test_mesh_tap_without_a_monitors_credentials_fails_with_one_line(
    secure: Secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(secure.env("gateway-gateway"), monkeypatch)
    line = one_line(mesh_command("tap", "--duration", "5s"))
    assert line.startswith("mesh tap: NATS refused: "), line
    assert f'"{subjects.TAP}"' in line


async def test_each_role_can_do_what_its_processes_need(secure: Secure, bus_of: Connect) -> None:
    """Least privilege, not less: the policy watch, the stream check, the event replay."""
    admin = await bus_of("admin")
    admin_kv = KvStore(admin, subjects.POLICY_BUCKET)
    await admin_kv.open()
    # An agent watches the policy bucket (every node's policy feed does).
    agent = await bus_of("agent-hello")
    agent_kv = KvStore(agent, subjects.POLICY_BUCKET)
    await agent_kv.open(history=subjects.POLICY_HISTORY)  # exists: opened, not created
    seen: list[str] = []

    async def saw(entry: KvEntry) -> None:
        seen.append(entry.key)

    watch = await agent_kv.watch(saw)
    await admin_kv.put("service.watched", b"{}", expected_revision=0)
    await until(lambda: "service.watched" in seen)
    await watch.stop()
    # A gateway finds the stream as the admin set it up, and changes nothing.
    gateway = await bus_of("gateway-gateway")
    await asyncio.wait_for(events.set_up(gateway, secure.settings("gateway-gateway")), 5)
    # A monitor replays the event log and reads the policies.
    await gateway.publish(
        subjects.event("instance.up", "hello"),
        encode(Event(id="replayed-1", kind="instance.up", service="hello")),
    )
    monitor = await bus_of("monitor")
    replayed: list[str] = []

    async def replay(delivery: Delivery) -> None:
        replayed.append(delivery.subject)

    await monitor.replay(subjects.EVENTS_STREAM, subjects.EVENTS, 0.0, replay)
    await until(lambda: subjects.event("instance.up", "hello") in replayed)
    # ... and so does a gateway, for its dashboard.
    replayed.clear()
    await gateway.replay(subjects.EVENTS_STREAM, subjects.EVENTS, 0.0, replay)
    await until(lambda: subjects.event("instance.up", "hello") in replayed)
    monitor_kv = KvStore(monitor, subjects.POLICY_BUCKET)
    await monitor_kv.open()
    assert "service.watched" in {entry.key for entry in await monitor_kv.entries()}
    assert [e.value for e in await monitor_kv.history("service.watched")] == [b"{}"]
    assert (await monitor_kv.get("service.watched")) is not None  # `mesh policy get`


async def test_a_monitor_asks_explain_and_nodes_answer_only_in_their_own_name(
    bus_of: Connect,
) -> None:
    def explainer(bus: NatsBus, role: str, service: str, instance: str) -> Explainer:
        node = Vantage(instance, role, no_route, Directory(), membership.View(PRESETS["lan"]), {})
        return Explainer(
            bus,
            gateway=role == "gateway",
            service=service,
            instance=instance,
            state=lambda: node,
            clock=clock,
            metrics=Metrics(),
        )

    await explainer(await bus_of("gateway-gateway"), "gateway", "gateway", "gw-1").start()
    agent = await bus_of("agent-hello")
    await explainer(agent, "agent", "hello", "h1").start()
    # In billing's name: NATS refuses the subscription, so nobody answers there.
    await explainer(agent, "agent", "billing", "b1").start()
    await agent.flush(2.0)
    monitor = await bus_of("monitor")
    question = msgspec.json.encode(Question("GET", "/x"))
    for subject, node in (
        (subjects.EXPLAIN, "gw-1"),
        (subjects.explain("hello"), "h1"),
        (subjects.explain("hello", "h1"), "h1"),
    ):
        answer = await monitor.request(subject, question, 2.0)
        assert msgspec.json.decode(answer, type=Explanation).node == node
    with pytest.raises(NoResponders):
        await monitor.request(subjects.explain("billing"), question, 2.0)
    with pytest.raises(BusRefused):  # nodes answer; they do not ask
        await agent.unless_refused(subjects.EXPLAIN, agent.request(subjects.EXPLAIN, question, 2.0))


async def test_a_gateway_that_may_not_change_the_stream_leaves_it_and_goes_on(
    secure: Secure, bus_of: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """Its settings ask for other limits: retrying would be refused forever, so it stops."""
    other = secure.settings("gateway-gateway", events_max_age=60.0)
    gateway = await bus_of("gateway-gateway", events_max_age=60.0)
    await asyncio.wait_for(events.ensure_stream(gateway, other), 3)
    assert "cannot set up the MESH_EVENTS stream: NATS refused" in caplog.text
    admin = await bus_of("admin")
    stream = await admin.client.jetstream().stream_info(subjects.EVENTS_STREAM)
    assert stream.config.max_age == config.Settings().events_max_age


async def test_a_node_whose_credentials_may_not_announce_it_does_not_start(
    secure: Secure,
) -> None:
    """hello's agent credentials on a billing agent: one line, not a node nobody hears."""
    settings = secure.settings("agent-hello")
    misplaced = Node(settings, heartbeat("b1", "billing", interval=settings.timing.interval))
    try:
        with pytest.raises(BusRefused) as caught:
            await misplaced.start()
    finally:
        await misplaced.bus.close()
    assert str(caught.value).endswith(
        "these credentials may not announce billing (another service's or role's?)"
    )
    assert 'publish to "mesh.v1.hb.billing.b1"' in str(caught.value)
    rightful = Node(settings, heartbeat("h1", "hello", interval=settings.timing.interval))
    await rightful.start()
    await rightful.stop()


async def test_the_gateways_presence_login_hears_a_close_and_only_gateways_say_gone(
    secure: Secure, bus_of: Connect
) -> None:
    """The presence user (system account) hears the mesh's connections close; the gateway
    that holds it says `gone`, every node hears it, no agent may say it."""
    settings = secure.settings("gateway-gateway", **secure.creds["presence"].overrides())
    observer = await bus_of("gateway-gateway")
    discovery = Discovery(observer, PRESETS["lan"], node="gw-1", metrics=Metrics(), events=None)
    await discovery.start()
    watcher = Presence(settings, observer, node="gw-1", metrics=Metrics())
    await watcher.start()  # a refused login would raise here
    heard: list[bytes] = []

    async def hear(delivery: Delivery) -> None:
        heard.append(delivery.data)

    await (await bus_of("agent-billing")).subscribe(subjects.GONE, hear)
    agent = NatsBus(secure.settings("agent-hello"), name="agent:hello:h7:3")
    await agent.start(wait=5.0)
    await agent.publish(
        subjects.heartbeat("hello", "h7"), encode(heartbeat("h7", "hello", incarnation=3))
    )
    # An agent may not say gone, not even of itself (refused by NATS, heard by nobody).
    await agent.publish(subjects.gone("hello", "h7"), b"{}")
    await agent.flush(2.0)
    await until(lambda: "h7" in discovery.view.members)
    await agent.close()
    await until(lambda: discovery.view.members["h7"].state is membership.State.SUSPECT)
    await until(lambda: heard)
    gone = decode(subjects.gone("hello", "h7"), heard[0])
    assert isinstance(gone, Gone)
    assert (gone.incarnation, gone.witness) == (3, "gw-1")
    assert len(heard) == 1  # the agent's own try never went out
    # It may read the servers' ping settings, and say that it covers: an agent hears it.
    await until(lambda: watcher.closes_within == 3.0)
    covered = CoverageWatch(
        await bus_of("agent-billing"), PRESETS["lan"], count_invalid=lambda _: None
    )
    await covered.start()
    await until(lambda: covered.covered, timeout=3.0)
    covered.stop()
    await watcher.stop()
    await discovery.stop()
