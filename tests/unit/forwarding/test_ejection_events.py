"""Ejection events are named after the instance's state, so that every ejecting node agrees."""

from __future__ import annotations

from typing import Any

from factories import evidence, feed, heartbeat, new_view

from mesh.forwarding.ejection_events import EjectionEvents
from mesh.membership.view import View
from mesh.resilience.outlier import Ejected, Restored

EJECTED = Ejected("i1", until=30.0, reason="consecutive-5xx")


def announced(*messages: Any) -> View:
    return feed(new_view(), *messages, now=0.0)[0]


def test_an_ejection_seen_here_is_named_by_the_seq_heard_of_the_instance() -> None:
    view = announced(heartbeat(incarnation=4, seq=12))
    event = EjectionEvents().event("orders", EJECTED, None, view)
    assert (event.id, event.kind, event.detail) == (
        "instance.ejected:orders:i1:4:12",
        "instance.ejected",
        {"reason": "consecutive-5xx"},
    )


def test_two_nodes_ejecting_on_one_evidence_agree_though_they_heard_other_seqs() -> None:
    said = evidence(instance="i1", seq=11)
    here = EjectionEvents().event("orders", EJECTED, said, announced(heartbeat(seq=12)))
    there = EjectionEvents().event("orders", EJECTED, said, announced(heartbeat(seq=11)))
    assert here.id == there.id == "instance.ejected:orders:i1:1:11"
    # Evidence from a node that does not say (0), or says a seq far from what this node
    # heard (which could name the ejection after an earlier one), is named by this node.
    for said in (evidence(), evidence(seq=5), evidence(seq=15)):
        unsaid = EjectionEvents().event("orders", EJECTED, said, announced(heartbeat(seq=12)))
        assert unsaid.id == "instance.ejected:orders:i1:1:12"


def test_a_restoration_takes_the_name_of_the_ejection_it_ends() -> None:
    events = EjectionEvents()
    events.event("orders", EJECTED, None, announced(heartbeat(seq=12)))
    later = announced(heartbeat(seq=40))  # heartbeats went on meanwhile
    restored = events.event("orders", Restored("i1"), None, later)
    assert (restored.id, restored.detail) == ("instance.restored:orders:i1:1:12", {})
    # Nothing left ongoing: a second restoration (not expected) is named by the state now.
    assert events.event("orders", Restored("i1"), None, later).id.endswith(":1:40")


def test_ejections_of_instances_the_view_forgot_are_forgotten() -> None:
    events = EjectionEvents()
    events.event("orders", EJECTED, None, announced(heartbeat(seq=12)))
    events.retain(announced(heartbeat("i2")))
    assert events.event("orders", Restored("i1"), None, announced()).id.endswith(":0:0")
