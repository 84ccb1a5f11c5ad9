"""The policy feed in process: revisions from an in-memory bucket, compiled, swapped, answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from factories import service_defaults
from manual_clock import ManualClock
from memory_bus import MemoryBus, MemoryHub
from policy_bucket import MemoryBucket
from waiting import settle, until

from mesh.bus.events import EventLog
from mesh.errors import BusError, BusTimeout
from mesh.forwarding import policy_feed
from mesh.forwarding.policy_feed import PolicyFeed, PolicyRejected
from mesh.messages import Event, decode
from mesh.metrics import Metrics
from mesh.observe.event_lines import line
from mesh.policy.model import Document, Route, Service

GREET: dict[str, Any] = {
    "kind": "Route",
    "name": "greet",
    "match": {"path_prefix": "/greet"},
    "to": [{"service": "hello"}],
}
SLOW_HELLO: dict[str, Any] = {"kind": "Service", "name": "hello", "timeouts": {"request": "9s"}}


@dataclass
class Compiler:
    """Stands in for the forwarding wiring: records each revision swapped in."""

    compiled: list[dict[str, Document]] = field(default_factory=list)
    refuse: str = ""  # compiling a revision holding this key raises PolicyRejected

    def __call__(self, documents: Mapping[str, Document]) -> None:
        if self.refuse in documents:
            raise PolicyRejected(f"{self.refuse}: cannot compile here")
        self.compiled.append(dict(documents))


@dataclass
class Node:
    hub: MemoryHub
    bus: MemoryBus
    bucket: MemoryBucket
    metrics: Metrics
    compiler: Compiler
    feed: PolicyFeed

    @property
    def compiled(self) -> list[dict[str, Document]]:
        return self.compiler.compiled

    def answers(self) -> list[tuple[str, str, str]]:
        """(kind, key@revision, reason) of every acknowledgement published."""
        found = []
        for delivery in self.hub.published:
            event = decode(delivery.subject, delivery.data)
            if isinstance(event, Event) and event.kind.startswith("policy."):
                assert event.instance == "node-1"
                assert event.detail["role"] == "agent"
                assert (
                    event.id
                    == f"{event.kind}:{event.detail['key']}:{event.detail['revision']}:node-1"
                )
                where = f"{event.detail['key']}@{event.detail['revision']}"
                found.append((event.kind, where, event.detail["reason"]))
        return found


@pytest.fixture
async def node(clock: ManualClock) -> AsyncIterator[Node]:
    hub, bucket, metrics = MemoryHub(), MemoryBucket(), Metrics()
    bus = hub.bus()
    events = EventLog(bus, "node-1", metrics)
    events.start()
    compiler = Compiler()
    feed = PolicyFeed(
        bus,
        bucket,
        node="node-1",
        role="agent",
        events=events,
        metrics=metrics,
        compile_and_swap=compiler,
        defaults=service_defaults(retry_attempts=5),
        clock=clock,
    )
    yield Node(hub, bus, bucket, metrics, compiler, feed)
    await feed.stop()
    await events.close(timeout=0.1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def started(node: Node) -> None:
    await node.feed.start()
    await until(node.feed.ready.is_set)
    await settle()  # the event log publishes


async def test_the_current_revisions_are_applied_before_the_feed_is_ready(node: Node) -> None:
    await node.bucket.put("route.greet", GREET)
    await node.bucket.put("service.hello", SLOW_HELLO)
    await node.feed.start()
    await node.feed.ready.wait()
    assert set(node.feed.documents) == {"route.greet", "service.hello"}
    assert node.feed.revisions == {"route.greet": 1, "service.hello": 2}
    assert set(node.compiled[-1]) == {"route.greet", "service.hello"}
    await settle()  # the event log publishes
    assert node.answers() == [
        ("policy.applied", "route.greet@1", ""),
        ("policy.applied", "service.hello@2", ""),
    ]
    gauge = {name: source for name, _, _, source in node.metrics._gauges}["mesh_policy_revision"]
    assert sorted(gauge()) == [(("route.greet",), 1.0), (("service.hello",), 2.0)]


async def test_an_acknowledgement_says_which_policy_and_how_long_it_took(
    node: Node, clock: ManualClock
) -> None:
    await started(node)
    await node.bucket.put("route.greet", GREET, created=clock.wall() - 0.003)
    await settle()
    [event] = [
        e
        for e in (decode(d.subject, d.data) for d in node.hub.published)
        if isinstance(e, Event) and e.kind == "policy.applied"
    ]
    assert (event.service, event.instance) == ("greet", "node-1")
    assert (event.detail["policy"], event.detail["revision"]) == ("Route/greet", "1")
    assert event.detail["after_ms"] == "3"
    assert line(event).endswith(
        "policy.applied     Route/greet rev 1 on node-1 (3 ms after publish)"
    )


async def test_a_service_document_is_merged_over_this_nodes_settings(node: Node) -> None:
    await started(node)
    await node.bucket.put("service.hello", SLOW_HELLO)
    hello = node.feed.documents["service.hello"]
    assert isinstance(hello, Service)
    assert hello.timeouts.request == 9.0  # as written
    assert hello.retries.attempts == 5  # left out: this node's MESH_RETRY_ATTEMPTS


async def test_a_new_revision_and_a_deletion_are_swapped_in_whole(node: Node) -> None:
    await started(node)
    await node.bucket.put("route.greet", GREET)
    await node.bucket.put("service.hello", SLOW_HELLO)
    await node.bucket.delete("route.greet")
    assert [sorted(revision) for revision in node.compiled] == [
        ["route.greet"],
        ["route.greet", "service.hello"],
        ["service.hello"],
    ]
    assert list(node.feed.documents) == ["service.hello"]
    await settle()
    assert node.answers()[-1] == ("policy.applied", "route.greet@3", "deleted")


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (b"{not json", "mesh_policies/route.greet@2: not JSON"),
        ({**GREET, "to": [{"service": "hello", "weight": "lots"}]}, "to[0].weight"),
        ({**GREET, "name": "other"}, "holds route.other"),
    ],
    ids=["not-json", "bad-field", "wrong-key"],
)
async def test_a_document_this_node_cannot_read_is_rejected_and_the_last_good_one_stays(
    node: Node, stored: dict[str, Any] | bytes, reason: str
) -> None:
    await started(node)
    await node.bucket.put("route.greet", GREET)
    good = node.feed.documents["route.greet"]
    await node.bucket.put("route.greet", stored)
    await settle()
    kind, where, said = node.answers()[-1]
    assert (kind, where) == ("policy.rejected", "route.greet@2")
    assert reason in said
    assert node.feed.documents == {"route.greet": good}
    assert node.feed.revisions == {"route.greet": 1}
    assert len(node.compiled) == 1  # the rejected revision never compiled


async def test_a_revision_that_does_not_compile_here_is_rejected(node: Node) -> None:
    await started(node)
    await node.bucket.put("route.greet", GREET)
    node.compiler.refuse = "service.hello"
    await node.bucket.put("service.hello", SLOW_HELLO)
    await settle()
    assert node.answers()[-1] == (
        "policy.rejected",
        "service.hello@2",
        "service.hello: cannot compile here",
    )
    assert list(node.feed.documents) == ["route.greet"]
    assert isinstance(node.feed.documents["route.greet"], Route)


async def test_a_reconnect_watches_afresh_and_applies_nothing_twice(node: Node) -> None:
    await node.bucket.put("route.greet", GREET)
    await started(node)
    [first] = node.bucket.watches
    node.bus.set_connected(False)
    node.bus.set_connected(True)
    await until(lambda: node.bucket.watches and node.bucket.watches[0] is not first)
    await until(node.bucket.watches[0].initial.is_set)
    assert first.stopped
    assert len(node.compiled) == 1  # the replayed revision was applied already
    await node.bucket.put("service.hello", SLOW_HELLO)  # and the new watch delivers
    assert set(node.feed.documents) == {"route.greet", "service.hello"}


async def test_without_a_bucket_the_node_serves_its_defaults_and_keeps_trying(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy_feed, "RETRY_OPEN", 0.01)
    node.bucket.refuse = BusError("BucketNotFoundError: no bucket yet")  # as kv.open says
    await started(node)  # ready: nothing to wait for
    assert node.compiled == []
    await node.bucket.put("route.greet", GREET)  # created meanwhile
    node.bucket.refuse = None
    await until(lambda: "route.greet" in node.feed.documents)
    assert node.bucket.opened == 1


async def test_a_bucket_that_does_not_answer_yet_is_waited_for_not_served_without(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded server or a consumer placed on a dying node: the node's own wait for its
    policies bounds this, not an answer-less first try that serves without the routes."""
    monkeypatch.setattr(policy_feed, "RETRY_OPEN", 0.01)
    await node.bucket.put("route.greet", GREET)
    node.bucket.refuse = BusTimeout("nats: timeout")
    await node.feed.start()
    await asyncio.sleep(0.05)  # several tries
    assert not node.feed.ready.is_set()
    node.bucket.refuse = None
    await until(node.feed.ready.is_set)
    assert "route.greet" in node.feed.documents  # ready only with the bucket's routes


async def test_stop_ends_the_watch(node: Node) -> None:
    await started(node)
    [watch] = node.bucket.watches
    await node.feed.stop()
    assert watch.stopped
    assert node.bucket.watches == []
