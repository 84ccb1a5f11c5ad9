"""mesh.membership.presence: connection names that say exactly which incarnation, and
closes of connections a node has already replaced."""

from __future__ import annotations

import pytest
from factories import heartbeat

from mesh.membership.connection_names import Named, connection_name, named
from mesh.membership.presence import Connections


def test_a_nodes_connection_name_reads_back_as_its_incarnation() -> None:
    record = heartbeat("hello-1", "hello", incarnation=1764491000123)
    assert connection_name(record) == "agent:hello:hello-1:1764491000123"
    assert named(connection_name(record)) == Named("hello", "hello-1", 1764491000123)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "mesh-nats-setup",  # the CLI's connections
        "presence:gw-1",  # a watcher's own
        "agent:hello:hello-1",  # no incarnation (a node from before presence)
        "monitor:hello:hello-1:5",  # not a node's role
        "agent:hello:hello-1:five",
        "agent:hello:hello-1:-5",
        "agent:hello:hello-1:\u00b2",  # a digit to str.isdigit, not to int()
        "agent:hel.lo:hello-1:5",  # no valid name: nothing the view could hold
        "agent:hello:hello-1:5:x",
    ],
)
def test_names_of_no_mesh_node_claim_nothing(name: str) -> None:
    assert named(name) is None


def test_the_close_of_a_replaced_connection_is_no_departure() -> None:
    """A node moved from NATS node a to b: b's connect may arrive before a's close."""
    seen = Connections()
    seen.connected("agent:hello:h1:5", ("a", 7), "agent-hello")
    seen.connected("agent:hello:h1:5", ("b", 3), "agent-hello")
    assert seen.closed("agent:hello:h1:5", ("a", 7), "agent-hello") == "moved"
    assert seen.closed("agent:hello:h1:5", ("b", 3), "agent-hello") == "gone"


@pytest.mark.parametrize("known", [True, False], ids=["connect-seen", "connect-before-watcher"])
def test_the_close_of_the_latest_connection_is_a_departure(known: bool) -> None:
    seen = Connections()
    if known:
        seen.connected("agent:hello:h1:5", ("a", 7), "agent-hello")
    assert seen.closed("agent:hello:h1:5", ("a", 7), "agent-hello") == "gone"
    # nothing left behind to block the next
    assert seen.closed("agent:hello:h1:5", ("a", 7), "agent-hello") == "gone"


def test_another_login_under_a_nodes_name_can_neither_say_it_went_nor_hide_its_going() -> None:
    """Another service's agent learns hello/h1's incarnation from its heartbeats, connects
    under its name and closes (to make it suspect), or stays (to hide its real close)."""
    seen = Connections()
    name = "agent:hello:h1:5"
    assert seen.connected(name, ("a", 7), "agent-hello")
    assert not seen.connected(name, ("a", 9), "agent-billing")
    assert seen.closed(name, ("a", 9), "agent-billing") == "impostor"
    assert seen.closed(name, ("a", 7), "agent-hello") == "gone"  # the impostor hid nothing


def test_after_the_watcher_was_away_a_close_is_believed_again() -> None:
    seen = Connections()
    seen.connected("agent:hello:h1:5", ("a", 7), "agent-hello")
    seen.connected("agent:hello:h1:5", ("b", 3), "agent-hello")
    seen.forget()  # b's close came while we were away; a's close now is the last
    assert seen.closed("agent:hello:h1:5", ("a", 7), "agent-hello") == "gone"
