"""mesh.haproxy.servers: the directory's instances as HAProxy servers, and the commands between."""

from __future__ import annotations

import pytest
from factories import evidence, heartbeat, new_view

from mesh.forwarding.directory import Directory
from mesh.haproxy.backends_cfg import SERVER_DEFAULTS
from mesh.haproxy.layout import Backend, Server, scaled_weights
from mesh.haproxy.servers import changes, desired
from mesh.membership import view as v
from mesh.membership.view import View
from mesh.resilience import outcome

HELLO = Backend("hello")
V2 = Backend("hello", (("version", "v2"),))


def fleet(*records: dict[str, object]) -> View:
    view = new_view()
    for number, fields in enumerate(records):
        fields = {"port": 9000 + number, "host": "127.0.0.1", **fields}
        view = v.apply(view, heartbeat(f"h{number}", "hello", **fields), 1.0)[0]  # type: ignore[arg-type]
    return view


def directory_of(view: View) -> Directory:
    directory = Directory(node="gw")
    directory.update(view, 1.0)
    return directory


def test_every_alive_instance_is_a_server_ready_when_routable() -> None:
    directory = directory_of(fleet({}, {"health": "failing"}, {"draining": True}))
    assert desired(directory, [HELLO]) == {
        "hello": {
            "h0": Server("h0", "127.0.0.1", 9000, 1, "ready"),
            "h1": Server("h1", "127.0.0.1", 9001, 1, "maint"),  # failing its checks
        }  # h2 drains: not a server at all (it finishes what it has)
    }


def test_a_subset_backend_holds_only_the_instances_carrying_it() -> None:
    directory = directory_of(fleet({"meta": {"version": "v1"}}, {"meta": {"version": "v2"}}))
    assert set(desired(directory, [HELLO, V2])[V2.name]) == {"h1"}
    assert V2.name.startswith("hello.")


def test_an_ejected_instance_is_in_maintenance() -> None:
    directory = directory_of(fleet({}, {}, {}))
    state = directory.state("hello")
    assert state is not None
    endpoint = state.endpoint("h1")
    assert endpoint is not None
    directory.observe(state, endpoint, outcome.REFUSED, 2.0)
    assert desired(directory, [HELLO])["hello"]["h1"].state == "maint"


def test_an_unknown_service_has_an_empty_backend() -> None:
    assert desired(Directory(), [Backend("nobody")]) == {"nobody": {}}


@pytest.mark.parametrize(
    ("weights", "scaled"),
    [
        ({"a": 1, "b": 3}, {"a": 1, "b": 3}),
        ({"a": 10_000, "b": 5_000, "c": 1}, {"a": 256, "b": 128, "c": 1}),
        ({}, {}),
    ],
)
def test_weights_keep_their_ratios_within_haproxys_range(
    weights: dict[str, int], scaled: dict[str, int]
) -> None:
    assert scaled_weights(weights) == scaled


READY = Server("a", "127.0.0.1", 9000, 1, "ready")


@pytest.mark.parametrize(
    ("before", "after", "commands"),
    [
        (
            None,
            READY,
            (
                f"add server hello/a 127.0.0.1:9000 weight 1 {SERVER_DEFAULTS}",
                "enable health hello/a",
                "set server hello/a state ready",
            ),
        ),
        (
            None,
            Server("a", "127.0.0.1", 9000, 1, "maint"),
            (
                f"add server hello/a 127.0.0.1:9000 weight 1 {SERVER_DEFAULTS}",
                "enable health hello/a",
            ),
        ),
        (READY, Server("a", "127.0.0.1", 9000, 5, "ready"), ("set server hello/a weight 5",)),
        (READY, Server("a", "127.0.0.1", 9000, 1, "maint"), ("set server hello/a state maint",)),
        (
            Server("a", "127.0.0.1", 9000, 1, "maint"),
            READY,
            ("set server hello/a health up", "set server hello/a state ready"),
        ),
        (READY, None, ("set server hello/a state maint", "del server hello/a")),
        # Another incarnation at another port: out first; it comes in on a later call.
        (
            READY,
            Server("a", "127.0.0.1", 9100, 1, "ready"),
            ("set server hello/a state maint", "del server hello/a"),
        ),
    ],
)
def test_the_commands_from_one_state_to_another(
    before: Server | None, after: Server | None, commands: tuple[str, ...]
) -> None:
    applied = {"hello": {} if before is None else {"a": before}}
    wanted = {"hello": {} if after is None else {"a": after}}
    (change,) = changes(applied, wanted)
    assert change.commands == commands
    assert change.after == (None if after is not None and after.port != READY.port else after)


def test_nothing_to_do_when_haproxy_has_what_is_wanted() -> None:
    assert changes({"hello": {"a": READY}}, {"hello": {"a": READY}}) == []


def test_backends_not_wanted_are_left_to_the_configuration() -> None:
    """A reload removes a backend; the runtime API cannot."""
    assert changes({"gone": {"a": READY}}, {}) == []


def test_evidence_from_elsewhere_puts_a_server_in_maintenance() -> None:
    directory = directory_of(fleet({}, {}, {}))
    directory.state("hello")
    for observer in ("o1", "o2", "o3"):  # corroborated by enough observers to eject
        directory.receive_evidence(
            evidence(service="hello", instance="h2", observer=observer, signal="refused"), 2.0
        )
    states = {name: s.state for name, s in desired(directory, [HELLO])["hello"].items()}
    assert states == {"h0": "ready", "h1": "ready", "h2": "maint"}
