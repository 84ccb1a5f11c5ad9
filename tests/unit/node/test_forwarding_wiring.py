"""The forwarding wiring in process: view, evidence and policies in; evidence and events out."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from factories import RequestHead, evidence, heartbeat, leave
from manual_clock import ManualClock
from memory_bus import MemoryBus, MemoryHub
from policy_bucket import MemoryBucket
from waiting import settle, until

from mesh import subjects
from mesh.bus.events import EventLog
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.errors import NoRoute
from mesh.forwarding.directory import Directory
from mesh.membership.discovery import Discovery
from mesh.messages import Event, Evidence, Heartbeat, Leave, decode, encode
from mesh.metrics import Metrics, registry_for, render
from mesh.node.forwarding import Forwarding
from mesh.resilience.outcome import REFUSED
from mesh.timing import PRESETS

GREET = {
    "kind": "Route",
    "name": "greet",
    "match": {"path_prefix": "/greet"},
    "rewrite": {"replace_prefix": "/"},
    "to": [{"service": "hello"}],
}
BASE_EJECTION = Settings().outlier_base_ejection


@dataclass
class MemoryNode:
    """What a node lends its forwarding (mesh.node.forwarding.Host), on a memory bus."""

    name: str
    service: str
    role: str
    bus: MemoryBus
    metrics: Metrics
    events: EventLog
    discovery: Discovery
    upstreams: Callable[[], object] | None = None


@dataclass
class Wired:
    hub: MemoryHub
    peer: MemoryBus  # the rest of the mesh
    clock: ManualClock
    bucket: MemoryBucket
    node: MemoryNode
    engine: Engine
    forwarding: Forwarding

    async def announce(self, message: Heartbeat | Leave) -> None:
        subject = (subjects.heartbeat if isinstance(message, Heartbeat) else subjects.leave)(
            message.service, message.instance
        )
        await self.peer.publish(subject, encode(message))

    def published(self, family: str) -> list[object]:
        prefix = f"{subjects.PREFIX}.{family}."
        return [
            decode(d.subject, d.data) for d in self.hub.published if d.subject.startswith(prefix)
        ]

    def events(self, kind: str) -> list[Event]:
        return [e for e in self.published("events") if isinstance(e, Event) and e.kind == kind]

    def route(self, target: bytes) -> tuple[str, bytes]:
        routed = self.engine.router(RequestHead(target, b"gateway.example.com"), 0.0)
        return routed.service, routed.target


def gateway_node(instance: str) -> Heartbeat:
    """A gateway in the view: an observer whose evidence is believed."""
    return heartbeat(instance, "gateway", role="gateway", host="127.0.0.1", port=8000)


def hello(instance: str, port: int = 9000, **fields: object) -> Heartbeat:
    return heartbeat(
        instance, "hello", role="agent", host="127.0.0.1", port=port, health="passing", **fields
    )


@contextlib.asynccontextmanager
async def wired(
    *, agent: bool, defaults: bool | None = None, everything: bool = True
) -> AsyncIterator[Wired]:
    """A node's forwarding on a memory bus; an agent falls back to the default routes,
    a gateway only if `defaults` (MESH_GATEWAY_DEFAULT_ROUTES) says so. Unless it hears
    `everything`, the node follows services on use and by policy."""
    hub, clock, bucket, metrics = MemoryHub(), ManualClock(), MemoryBucket(), Metrics()
    bus = hub.bus()
    events = EventLog(bus, "gw-1", metrics, clock=clock)
    discovery = Discovery(
        bus,
        PRESETS["local"],
        node="gw-1",
        metrics=metrics,
        events=events,
        clock=clock,
        everything=everything,
    )
    role = "agent" if agent else "gateway"
    node = MemoryNode("gw-1", "gateway", role, bus, metrics, events, discovery)
    settings = Settings()
    directory = Directory(node="gw-1")
    engine = Engine(settings, directory, metrics, strip_mesh_headers=not agent)
    fallback = engine.default_routes if (agent if defaults is None else defaults) else None
    forwarding = Forwarding(
        node,
        engine,
        settings,
        zone="",
        fallback=fallback,
        policies=bucket,
        clock=clock,
        edge=not agent,
    )
    events.start()
    await discovery.start()
    await forwarding.start(wait_policies=1.0)
    try:
        yield Wired(hub, hub.bus(), clock, bucket, node, engine, forwarding)
    finally:
        await forwarding.stop()
        await discovery.stop()
        await events.close(timeout=0.1)
        engine.pools.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Wired]:
    """Default routes off: only Route policies route."""
    async with wired(agent=False) as found:
        yield found


@pytest.fixture
async def agent() -> AsyncIterator[Wired]:
    """Default routes behind the Route policies, as an agent's outbound proxy has them."""
    async with wired(agent=True) as found:
        yield found


async def three_hellos(wired: Wired) -> None:
    for n in (1, 2, 3):
        await wired.announce(hello(f"h{n}", 9000 + n))


@dataclass
class IdleConnection:
    """What a pool keeps of an upstream connection (mesh.engine.upstream), without a socket."""

    key: tuple[str, int]
    closed: bool = False
    idle_since: float = 0.0

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


async def test_view_changes_reach_the_directory_and_close_pools_to_departed_instances(
    gateway: Wired,
) -> None:
    await gateway.announce(hello("h1", 9001))
    await gateway.announce(hello("h2", 9002))
    directory, pools = gateway.engine.directory, gateway.engine.pools
    assert directory.version == gateway.node.discovery.view.version
    state = directory.state("hello")
    assert state is not None
    assert state.has("h1")
    idle = [IdleConnection(("127.0.0.1", port)) for port in (9001, 9002)]
    for conn in idle:
        pools.give_back(conn, 0.0)  # type: ignore[arg-type]
    await gateway.announce(leave("h1", "hello"))
    assert not state.has("h1")
    # An idle connection to a departed instance is closed at once; the others stay.
    assert [conn.closed for conn in idle] == [True, False]
    assert pools.idle_count() == 1
    assert gateway.node.upstreams is not None
    described = gateway.node.upstreams()
    assert isinstance(described, dict)
    assert [i["instance"] for i in described["hello"]["instances"]] == ["h2"]


async def test_hard_evidence_from_the_bus_ejects_here_and_becomes_an_event(
    gateway: Wired,
) -> None:
    await three_hellos(gateway)
    await gateway.announce(gateway_node("gw-2"))
    gateway.engine.directory.state("hello")  # this node calls hello
    await gateway.announce(hello("h2", 9002, seq=8))  # this node has heard seq 8 by now
    refused = evidence(service="hello", instance="h2", observer="gw-2", signal="refused", seq=7)
    await gateway.peer.publish(subjects.evidence("gateway", "hello", "h2"), encode(refused))
    await until(lambda: gateway.events("instance.ejected"))
    [ejected] = gateway.events("instance.ejected")
    assert (ejected.instance, ejected.detail) == ("h2", {"reason": "evidence-refused"})
    # Named after the instance's state the observer saw fail (incarnation 1, seq 7), as
    # the observer names its own: one event however many nodes eject on its word.
    assert ejected.id == "instance.ejected:hello:h2:1:7"
    exposition = render(registry_for(gateway.node.metrics)).decode()
    assert 'mesh_ejections_active{service="hello"} 1.0' in exposition
    # Ejected on another observer's word: counted under the instance, by that cause.
    ejections = (
        'mesh_upstream_ejections_total{cause="evidence-refused",mesh_instance="h2",service="hello"}'
    )
    assert ejections + " 1.0" in exposition

    gateway.clock.now += BASE_EJECTION - 0.1
    gateway.engine.sweep()
    await settle()
    assert gateway.events("instance.restored") == []
    gateway.clock.now += 0.2  # the ejection ran out on the injected clock
    gateway.engine.sweep()
    await until(lambda: gateway.events("instance.restored"))
    # The end of that same ejection: whichever node lets it back first stores it.
    assert [e.id for e in gateway.events("instance.restored")] == ["instance.restored:hello:h2:1:7"]


async def test_requests_in_flight_to_each_service_are_a_gauge(gateway: Wired) -> None:
    await three_hellos(gateway)
    state = gateway.engine.directory.state("hello")
    assert state is not None
    assert [state.limit.try_acquire(), state.limit.try_acquire()] == [True, True]  # two under way
    exposition = render(registry_for(gateway.node.metrics)).decode()
    assert 'mesh_upstream_requests_in_flight{service="hello"} 2.0' in exposition
    state.limit.release()
    exposition = render(registry_for(gateway.node.metrics)).decode()
    assert 'mesh_upstream_requests_in_flight{service="hello"} 1.0' in exposition


async def test_evidence_about_strangers_or_unreadable_is_dropped(gateway: Wired) -> None:
    await three_hellos(gateway)
    await gateway.announce(gateway_node("gw-2"))
    gateway.engine.directory.state("hello")
    stranger = evidence(service="hello", instance="h9", observer="gw-2", signal="refused")
    await gateway.peer.publish(subjects.evidence("gateway", "hello", "h9"), encode(stranger))
    await gateway.peer.publish(subjects.evidence("gateway", "hello", "h1"), b"{broken")
    await settle()
    assert gateway.node.metrics.bus_invalid == {"evidence": 1}
    assert gateway.engine.directory.ejected_counts() == {"hello": 0}
    assert gateway.events("instance.ejected") == []


async def test_evidence_from_an_observer_its_reporter_does_not_have_is_dropped(
    gateway: Wired,
) -> None:
    """A reporter may publish only its own subjects, but could make up observers to pose
    as corroboration: each observer must be a member of the reporting service."""
    await three_hellos(gateway)
    await gateway.announce(gateway_node("gw-2"))
    gateway.engine.directory.state("hello")
    for observer, reporter in (("ghost", "hello"), ("gw-2", "hello"), ("h1", "gateway")):
        forged = evidence(service="hello", instance="h2", observer=observer, reporter=reporter)
        await gateway.peer.publish(subjects.evidence(reporter, "hello", "h2"), encode(forged))
    # The reporter in the content must be the one in the subject (what NATS checked).
    posing = evidence(service="hello", instance="h2", observer="gw-2", reporter="gateway")
    await gateway.peer.publish(subjects.evidence("hello", "hello", "h2"), encode(posing))
    await settle()
    assert gateway.node.metrics.view_dropped == {"evidence-observer": 3}
    assert gateway.node.metrics.bus_invalid == {"evidence": 1}
    assert gateway.engine.directory.ejected_counts() == {"hello": 0}


async def test_our_own_refused_connection_goes_out_as_evidence(gateway: Wired) -> None:
    await three_hellos(gateway)
    await gateway.announce(gateway_node("gw-1"))  # NATS echoes our own heartbeat
    directory = gateway.engine.directory
    state = directory.state("hello")
    assert state is not None
    endpoint = directory.pick(state, random.Random(1), 0.0, (), {"h1", "h3"}, None)
    directory.observe(state, endpoint, REFUSED, gateway.clock.now)
    await until(lambda: gateway.published("evidence"))
    [sent] = gateway.published("evidence")
    assert isinstance(sent, Evidence)
    assert (sent.service, sent.instance, sent.observer, sent.reporter, sent.signal) == (
        "hello",
        "h2",
        "gw-1",
        "gateway",
        "refused",
    )
    # NATS echoes it back: our own word ejects here too, as anyone's would.
    await until(lambda: gateway.events("instance.ejected"))
    # The evidence carries the seq we had heard of h2, which names our ejection event:
    # every node ejecting on it derives the same id.
    assert sent.seq == 1
    assert [e.id for e in gateway.events("instance.ejected")] == ["instance.ejected:hello:h2:1:1"]


async def test_route_policies_choose_the_gateways_router(gateway: Wired) -> None:
    await three_hellos(gateway)
    with pytest.raises(NoRoute):
        gateway.route(b"/hello/x")  # the gateway's default routes are off
    await gateway.bucket.put("route.greet", GREET)
    assert gateway.route(b"/greet/x") == ("hello", b"/x")
    with pytest.raises(NoRoute):
        gateway.route(b"/hello/x")  # no fallback behind the policy routes either
    await gateway.bucket.delete("route.greet")
    with pytest.raises(NoRoute):
        gateway.route(b"/greet/x")


async def test_an_agent_falls_back_to_its_default_routes(agent: Wired) -> None:
    await three_hellos(agent)
    assert agent.route(b"/hello/x") == ("hello", b"/x")
    await agent.bucket.put("route.greet", GREET)
    assert agent.route(b"/greet/x") == ("hello", b"/x")
    assert agent.route(b"/hello/y") == ("hello", b"/y")


KEYED = {
    "kind": "Route",
    "name": "keyed",
    "match": {"hosts": ["api.example.com"]},
    "auth": {"type": "api_key", "keys": [{"consumer": "alice", "sha256": "0" * 64}]},
    "to": [{"service": "hello"}],
}


async def test_a_gateways_default_routes_do_not_bypass_a_routes_auth() -> None:
    async with wired(agent=False, defaults=True) as gateway:
        await three_hellos(gateway)
        assert gateway.route(b"/hello/x") == ("hello", b"/x")
        await gateway.bucket.put("route.keyed", KEYED)
        with pytest.raises(NoRoute):
            gateway.route(b"/hello/x")  # only through route keyed, with a key
        await gateway.bucket.delete("route.keyed")
        assert gateway.route(b"/hello/x") == ("hello", b"/x")


async def test_an_agent_calls_a_service_an_auth_route_guards_by_name(agent: Wired) -> None:
    await three_hellos(agent)
    await agent.bucket.put("route.keyed", KEYED)
    # Inside the mesh: the callee's agent decides (mTLS and access.allow_from).
    assert agent.route(b"/hello/x") == ("hello", b"/x")


async def test_a_service_document_changes_how_this_node_calls_the_service(
    gateway: Wired,
) -> None:
    await three_hellos(gateway)
    directory = gateway.engine.directory
    before = directory.state("hello")
    assert before is not None
    assert before.policy.balance.algorithm == "least_request"
    await gateway.bucket.put(
        "service.hello", {"kind": "Service", "name": "hello", "balance": {"algorithm": "random"}}
    )
    after = directory.state("hello")
    assert after is not None
    assert after is not before  # rebuilt with the new policy
    assert after.policy.balance.algorithm == "random"
    assert after.has("h1")


async def test_a_route_whose_key_file_is_missing_here_is_rejected_and_the_last_router_stays(
    gateway: Wired, tmp_path: Path
) -> None:
    await three_hellos(gateway)
    await gateway.bucket.put("route.greet", GREET)
    locked = {
        **GREET,
        "auth": {
            "type": "jwt",
            "algorithm": "HS256",
            "issuer": "https://login.example.com",
            "audience": ["api"],
            "key_file": str(tmp_path / "missing-secret"),
        },
    }
    await gateway.bucket.put("route.greet", locked)
    await until(lambda: gateway.events("policy.rejected"))
    assert "missing-secret" in gateway.events("policy.rejected")[-1].detail["reason"]
    assert gateway.route(b"/greet/x") == ("hello", b"/x")  # still the open route


async def test_a_node_following_on_use_follows_a_service_named_by_a_first_call() -> None:
    async with wired(agent=True, everything=False) as agent:
        engine, discovery = agent.engine, agent.node.discovery
        assert engine.used is discovery.used  # each routed request stamps its service
        with pytest.raises(NoRoute) as refused:
            agent.route(b"http://hello/x")
        assert refused.value.unknown == ("hello",)
        assert engine.on_unknown is not None
        waiting = engine.on_unknown(refused.value.unknown)
        assert waiting is not None
        first_call = asyncio.create_task(waiting)
        asked = f"{subjects.SYNC}.hello"
        await until(lambda: any(d.subject == asked for d in agent.hub.published))
        assert not first_call.done()
        await agent.announce(hello("h1"))  # hello's node answers the sync
        await asyncio.wait_for(first_call, 1)
        assert agent.route(b"http://hello/x") == ("hello", b"/x")
        assert engine.on_unknown(("hello",)) is None  # followed: no wait for the next
        assert engine.on_unknown(("bad.name",)) is None  # never a service name


async def test_the_own_services_document_preloads_what_its_nodes_follow() -> None:
    async with wired(agent=True, everything=False) as agent:
        discovery = agent.node.discovery
        document = {"kind": "Service", "name": "gateway", "preload": ["hello", "not-yet"]}
        await agent.bucket.put("service.gateway", document)
        await until(lambda: discovery.interested("hello") and discovery.interested("not-yet"))
        await agent.announce(hello("h1"))
        assert "h1" in discovery.view.members
        assert discovery.following.interest.pinned == {"hello", "not-yet"}
        await agent.bucket.put("service.gateway", {**document, "preload": ["hello"]})
        await until(lambda: discovery.following.interest.pinned == {"hello"})
        assert discovery.interested("not-yet")  # no longer pinned: let go once idle


async def test_another_services_preload_is_not_this_nodes() -> None:
    async with wired(agent=True, everything=False) as agent:
        await agent.bucket.put(
            "service.hello", {"kind": "Service", "name": "hello", "preload": ["billing"]}
        )
        await settle()
        assert not agent.node.discovery.interested("billing")


async def test_a_gateway_following_its_routes_follows_what_they_send_to() -> None:
    async with wired(agent=False, everything=False) as gateway:
        discovery = gateway.node.discovery
        await gateway.bucket.put("route.greet", GREET)
        await until(lambda: discovery.interested("hello"))
        await three_hellos(gateway)
        assert gateway.route(b"/greet/x") == ("hello", b"/x")
        await gateway.bucket.delete("route.greet")
        await until(lambda: discovery.following.interest.pinned == frozenset())


async def test_evidence_from_a_service_not_followed_counts_as_one_observer() -> None:
    """This node knows none of web's instances: two of them are one vote, so soft
    evidence from both does not eject; with a vote of this node's own, it does."""
    async with wired(agent=True, everything=False) as agent:
        await agent.node.discovery.want("hello")
        await three_hellos(agent)
        agent.engine.directory.state("hello")
        for observer in ("web-1", "web-2"):
            soft = evidence(
                service="hello",
                instance="h2",
                observer=observer,
                reporter="web",
                signal="5xx",
                streak=1,
            )
            await agent.peer.publish(subjects.evidence("web", "hello", "h2"), encode(soft))
        await settle()
        assert agent.engine.directory.ejected_counts() == {"hello": 0}
        assert agent.node.metrics.view_dropped == {}
        ours = evidence(
            service="hello",
            instance="h2",
            observer="gw-1",
            reporter="gateway",
            signal="5xx",
            streak=1,
        )
        await agent.peer.publish(subjects.evidence("gateway", "hello", "h2"), encode(ours))
        await until(lambda: agent.engine.directory.ejected_counts() == {"hello": 1})


async def test_first_calls_in_one_turn_cannot_pass_the_follow_cap_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mesh.node.forwarding.MOST_FOLLOWED", 2)
    async with wired(agent=False, defaults=True, everything=False) as gateway:
        hook = gateway.engine.on_unknown
        assert hook is not None
        first = hook(("made-up-1", "made-up-2"))  # not run yet: nothing followed so far
        assert first is not None
        assert hook(("made-up-3",)) is None  # the two above count already
        first.close()


async def test_a_name_no_member_answered_for_is_let_go_after_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with wired(agent=False, defaults=True, everything=False) as gateway:
        discovery = gateway.node.discovery
        await discovery.first_call(["made-up"], 0.02)  # nobody answers
        assert discovery.interested("made-up")
        await until(lambda: not discovery.interested("made-up"), 1)  # no slot held


async def test_names_made_up_by_requests_cannot_grow_what_a_node_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mesh.node.forwarding.MOST_FOLLOWED", 2)
    async with wired(agent=False, defaults=True, everything=False) as gateway:
        assert gateway.engine.on_unknown is not None
        waiting = gateway.engine.on_unknown(("made-up-1", "made-up-2"))
        assert waiting is not None
        with contextlib.suppress(TimeoutError):  # nobody answers: no need to wait it out
            await asyncio.wait_for(waiting, 0.02)
        assert gateway.engine.on_unknown(("made-up-3",)) is None  # answered at once
        assert not gateway.node.discovery.interested("made-up-3")
        exposition = render(registry_for(gateway.node.metrics)).decode()
        assert "mesh_interest_refused_total 1.0" in exposition
        assert "mesh_services_followed 2.0" in exposition
