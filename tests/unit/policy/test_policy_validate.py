"""mesh.policy.validate: duplicate names are errors; unknown names and shadowed routes warn."""

from __future__ import annotations

from typing import Any

from factories import service_defaults

from mesh.policy.decode import parse
from mesh.policy.model import Document, Route, Service
from mesh.policy.validate import Sourced, validate

DEFAULTS = service_defaults()


def doc(**obj: Any) -> Document:
    document = parse(obj, DEFAULTS)
    assert isinstance(document, Route | Service), document
    return document


def sourced(*documents: Document, file: str = "a.yaml") -> list[Sourced]:
    return [Sourced(file, i, document, {}) for i, document in enumerate(documents)]


def service(name: str, **fields: Any) -> Document:
    return doc(kind="Service", name=name, **fields)


def route(name: str, *services: str, **match: Any) -> Document:
    to = [{"service": s} for s in services]
    return doc(kind="Route", name=name, to=to, match=match)


def test_a_consistent_set_has_no_problems() -> None:
    errors, warnings = validate(sourced(route("r", "s", "t"), service("s"), service("t")))
    assert (errors, warnings) == ([], [])


def test_duplicate_names_of_one_kind_are_errors_across_files() -> None:
    items = [*sourced(service("s"), route("r", "s")), *sourced(service("s"), file="b.yaml")]
    errors, _ = validate(items)
    assert [(p.file, p.doc_index, p.path, p.value) for p in errors] == [("b.yaml", 0, "name", "s")]
    assert "duplicate Service name, first defined in a.yaml[0]" in errors[0].message


def test_a_route_and_a_service_may_share_a_name() -> None:
    errors, warnings = validate(sourced(route("hello", "hello"), service("hello")))
    assert (errors, warnings) == ([], [])


def test_unknown_services_are_warnings() -> None:
    errors, warnings = validate(sourced(route("r", "s", "typo"), service("s")))
    assert errors == []
    assert [(p.doc_index, p.path, p.value) for p in warnings] == [(0, "to[1].service", "typo")]


def test_routes_with_the_same_match_warn_that_the_later_name_never_matches() -> None:
    errors, warnings = validate(
        sourced(
            route("b", "s", hosts=["A.example.com"], path_prefix="/x/"),
            route("a", "s", hosts=["a.example.com"], path_prefix="/x"),
            route("c", "s", hosts=["a.example.com"], path_prefix="/x", methods=["GET"]),
            service("s"),
        )
    )
    assert errors == []
    assert [(p.doc_index, p.path) for p in warnings] == [(0, "match")]
    assert "route 'a' has the same match" in warnings[0].message
    assert warnings[0].value == {
        "hosts": ("A.example.com",),
        "path_prefix": "/x/",
        "path_exact": None,
        "path_regex": None,
        "methods": (),
        "headers": (),
    }
