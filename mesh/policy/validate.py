"""Checks across a set of policy documents: duplicates are errors, dangling names warnings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from mesh.policy.fields import enc_hook
from mesh.policy.match import normal_prefix
from mesh.policy.model import Document, Route, Service, key, kind
from mesh.policy.problem import Problem


class Sourced(NamedTuple):
    """A document, where it was read (file, index from 0) and its fields as written.

    `document` has the fields the text leaves out filled in; `written` is what the
    bucket stores, so that each node fills them from its own settings.
    """

    file: str
    doc_index: int
    document: Document
    written: dict[str, Any]


def validate(documents: Sequence[Sourced]) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) about `documents` as one set; subsets are checked at run time."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    first: dict[str, Sourced] = {}
    for item in documents:
        seen = first.setdefault(key(item.document), item)
        if seen is not item:
            where = f"{seen.file}[{seen.doc_index}]"
            message = f"duplicate {kind(item.document)} name, first defined in {where}"
            errors.append(_problem(item, "name", item.document.name, message))
    services = {item.document.name for item in documents if isinstance(item.document, Service)}
    for item in documents:
        document = item.document
        if isinstance(document, Route):
            for i, destination in enumerate(document.to):
                if destination.service not in services:
                    message = "no Service document has this name: defaults apply (a typo?)"
                    warnings.append(
                        _problem(item, f"to[{i}].service", destination.service, message)
                    )
    warnings.extend(_shadowed(documents))
    return errors, warnings


def _shadowed(documents: Sequence[Sourced]) -> list[Problem]:
    """Routes with the very same conditions: only the first by name can ever match."""
    winners: dict[tuple[object, ...], str] = {}
    problems = []
    routes = [(item, item.document) for item in documents if isinstance(item.document, Route)]
    for item, route in sorted(routes, key=lambda pair: pair[1].name):
        match = route.match
        same = (
            frozenset(host.lower() for host in match.hosts),
            None if match.path_prefix is None else normal_prefix(match.path_prefix),
            match.path_exact,
            match.path_regex,
            frozenset(match.methods),
            frozenset((h.name.lower(), h.exact, h.regex, h.present) for h in match.headers),
        )
        winner = winners.setdefault(same, route.name)
        if winner != route.name:
            message = f"route {winner!r} has the same match and wins by name: this never matches"
            value = msgspec.to_builtins(match, enc_hook=enc_hook)
            problems.append(_problem(item, "match", value, message))
    return problems


def _problem(item: Sourced, path: str, value: object, message: str) -> Problem:
    return Problem(
        file=item.file, doc_index=item.doc_index, path=path, value=value, message=message
    )
