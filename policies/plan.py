"""What an apply would change: local documents against the bucket, as a list and a diff."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import yaml

from mesh.policy.model import key
from mesh.policy.validate import Sourced

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A key's current value in the bucket and the revision it was read at."""

    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    action: Action
    expected_revision: int  # compare-and-set: the write fails if the key moved since
    value: bytes  # the new value ("" for a delete)
    before: bytes  # the old value ("" for a create)
    source: str  # file[index] the new value came from ("" for a delete)


def plan(
    documents: Sequence[Sourced], stored: Mapping[str, Stored], *, prune: bool
) -> list[Change]:
    """Changed keys only; deletions of keys no file mentions only with `prune`."""
    changes: list[Change] = []
    # Stored as written: what a document leaves out, each node fills from its settings.
    wanted: dict[str, tuple[bytes, str]] = {
        key(item.document): (msgspec.json.encode(item.written), f"{item.file}[{item.doc_index}]")
        for item in documents
    }
    for name, (value, source) in sorted(wanted.items()):
        current = stored.get(name)
        if current is None:
            changes.append(Change(name, "create", 0, value, b"", source))
        elif _canonical(current.value) != _canonical(value):
            changes.append(Change(name, "update", current.revision, value, current.value, source))
    if prune:
        for name, current in sorted(stored.items()):
            if name not in wanted:
                changes.append(Change(name, "delete", current.revision, b"", current.value, ""))
    return changes


def _canonical(value: bytes) -> object:
    """Compare meaning, not bytes: key order and number spelling do not count as changes."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def as_yaml(value: bytes) -> str:
    if not value:
        return ""
    try:
        return yaml.safe_dump(json.loads(value), sort_keys=False, default_flow_style=False)
    except ValueError:
        return value.decode(errors="replace") + "\n"


def render(changes: Sequence[Change]) -> str:
    """A unified diff of every change, documents shown as YAML."""
    out: list[str] = []
    for change in changes:
        header = f"{change.action} {change.key}" + (f"  ({change.source})" if change.source else "")
        out.append(header + "\n")

        before = as_yaml(change.before).splitlines(keepends=True)
        after = as_yaml(change.value).splitlines(keepends=True)
        old = f"{change.key}@{change.expected_revision}" if change.before else "/dev/null"
        new = change.key if change.value else "/dev/null"
        out.extend(difflib.unified_diff(before, after, old, new))
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)
