"""mesh.subjects: builders, the name rule, `owner` and NATS wildcard matching."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from memory_bus import matches

from mesh import subjects
from mesh.errors import InvalidName


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (subjects.heartbeat("orders", "i-1"), "mesh.v1.hb.orders.i-1"),
        (subjects.leave("orders", "i_1"), "mesh.v1.leave.orders.i_1"),
        (subjects.evidence("web", "Orders", "A9"), "mesh.v1.evidence.web.Orders.A9"),
        (subjects.event("instance.up", "orders"), "mesh.v1.events.instance.up.orders"),
        (subjects.event("policy.rejected", "web"), "mesh.v1.events.policy.rejected.web"),
        (subjects.HEARTBEATS, "mesh.v1.hb.>"),
        (subjects.LEAVES, "mesh.v1.leave.>"),
        (subjects.EVIDENCE, "mesh.v1.evidence.>"),
        (subjects.EVENTS, "mesh.v1.events.>"),
        (subjects.SYNC, "mesh.v1.sync"),
    ],
)
def test_builders(built: str, expected: str) -> None:
    assert built == expected


def test_wildcards_cover_what_the_builders_make() -> None:
    assert matches(subjects.HEARTBEATS, subjects.heartbeat("a", "b"))
    assert matches(subjects.LEAVES, subjects.leave("a", "b"))
    assert matches(subjects.EVIDENCE, subjects.evidence("r", "a", "b"))
    assert matches(subjects.EVENTS, subjects.event("instance.down", "a"))
    assert not matches(subjects.HEARTBEATS, subjects.leave("a", "b"))


BUILDERS: list[Callable[[str, str], str]] = [
    subjects.heartbeat,
    subjects.leave,
    lambda service, instance: subjects.evidence("web", service, instance),
    lambda reporter, service: subjects.evidence(reporter, service, "i1"),
]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", ["a.b", "a b", "*", ">", "a>", "", "x" * 129])
def test_builders_refuse_bad_names_in_either_position(
    build: Callable[[str, str], str], bad: str
) -> None:
    with pytest.raises(InvalidName) as caught:
        build(bad, "ok")
    assert caught.value.name == bad
    with pytest.raises(InvalidName):
        build("ok", bad)


@pytest.mark.parametrize(
    ("kind", "service"),
    [("instance.*", "orders"), ("instance..up", "orders"), ("instance.up", "a.b"), ("", "a")],
)
def test_event_subject_refuses_bad_kind_or_service(kind: str, service: str) -> None:
    with pytest.raises(InvalidName):
        subjects.event(kind, service)


NAMES: list[tuple[str, bool]] = [
    ("orders", True),
    ("Orders-2_b", True),
    ("0", True),
    ("x" * 128, True),
    ("x" * 129, False),
    ("", False),
    ("a.b", False),
    ("a b", False),
    ("a*", False),
    ("a>", False),
    ("orders\n", False),
    ("\norders", False),
    ("naïve", False),
    ("a/b", False),
    ("a:b", False),
]


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_check_name(name: str, valid: bool) -> None:
    assert subjects.is_valid_name(name) is valid
    if valid:
        assert subjects.check_name(name) == name
    else:
        with pytest.raises(InvalidName, match="invalid name"):
            subjects.check_name(name)


def test_invalid_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        subjects.check_name("a.b")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("mesh.v1.hb.orders.i1", ("orders", "i1")),
        ("mesh.v1.leave.orders.i1", ("orders", "i1")),
        ("mesh.v1.evidence.web.orders.i1", ("orders", "i1")),
        ("mesh.v1.evidence.orders.i1", None),  # evidence names its reporter first
        ("mesh.v1.hb.orders", None),  # too short
        ("mesh.v1.hb.orders.i1.x", None),  # too long
        ("mesh.v2.hb.orders.i1", None),  # other version
        ("other.v1.hb.orders.i1", None),
        ("mesh.v1.sync", None),
        ("mesh.v1.events.instance.up.orders", None),
        ("mesh.v1.events.up.orders", None),  # five tokens, but not a per-instance family
        ("mesh.v1.sync.orders.i1", None),
        ("_INBOX.abc.1", None),
        ("", None),
    ],
)
def test_owner(subject: str, expected: tuple[str, str] | None) -> None:
    assert subjects.owner(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("mesh.v1.evidence.web.orders.i1", "web"),
        ("mesh.v1.evidence.orders.i1", None),
        ("mesh.v1.evidence.web.orders.i1.x", None),
        ("mesh.v2.evidence.web.orders.i1", None),
        ("mesh.v1.hb.web.orders.i1", None),
    ],
)
def test_reporter(subject: str, expected: str | None) -> None:
    assert subjects.reporter(subject) == expected


MATCHES: list[tuple[str, str, bool]] = [
    # exact
    ("mesh.v1.sync", "mesh.v1.sync", True),
    ("mesh.v1.sync", "mesh.v1.syn", False),
    ("mesh.v1.sync", "mesh.v1.sync.x", False),  # longer subject
    ("mesh.v1.sync.x", "mesh.v1.sync", False),  # shorter subject
    # `*`: exactly one token
    ("mesh.v1.hb.*.i1", "mesh.v1.hb.orders.i1", True),
    ("mesh.v1.hb.*.i1", "mesh.v1.hb.orders.i2", False),
    ("mesh.v1.hb.*", "mesh.v1.hb.orders", True),
    ("mesh.v1.hb.*", "mesh.v1.hb.orders.i1", False),
    ("mesh.v1.hb.*", "mesh.v1.hb", False),
    ("*.*.*", "a.b.c", True),
    ("*", "a", True),
    ("*", "a.b", False),
    # `>`: one or more trailing tokens
    ("mesh.v1.hb.>", "mesh.v1.hb.orders.i1", True),
    ("mesh.v1.hb.>", "mesh.v1.hb.orders", True),
    ("mesh.v1.hb.>", "mesh.v1.hb", False),  # `>` needs at least one token
    ("mesh.v1.hb.>", "mesh.v1.leave.orders.i1", False),
    (">", "a", True),
    (">", "a.b.c", True),
    ("mesh.*.hb.>", "mesh.v9.hb.x", True),
    ("mesh.*.hb.>", "mesh.v9.lb.x", False),
    # inboxes, as the memory bus uses them
    ("_INBOX.memory.3", "_INBOX.memory.3", True),
    ("_INBOX.memory.3", "_INBOX.memory.30", False),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), MATCHES)
def test_matches(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


def test_stream_and_bucket_names() -> None:
    assert subjects.EVENTS_STREAM == "MESH_EVENTS"
    assert subjects.POLICY_BUCKET == "mesh_policies"
