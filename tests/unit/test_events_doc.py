"""docs/events.md stays true: it documents exactly the kinds the code emits, with real events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from mesh import subjects
from mesh.messages import Event, EventKind, decode

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "events.md").read_text()
KINDS = get_args(EventKind)
ARRIVALS = ("instance.up", "instance.restarted")


def sections() -> dict[str, str]:
    """Each `### `kind`` heading of the doc, and the text up to the next heading."""
    parts = re.split(r"^### `([^`]+)`\n", DOC, flags=re.MULTILINE)
    return dict(
        zip(
            parts[1::2], (re.split(r"^#", body, flags=re.M)[0] for body in parts[2::2]), strict=True
        )
    )


def test_the_doc_documents_exactly_the_kinds_there_are() -> None:
    assert sorted(sections()) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_declared_kind_is_emitted_somewhere(kind: str) -> None:
    """A kind that only its declaration names is one a subscriber would wait for forever."""
    users = [
        path
        for path in (ROOT / "mesh").rglob("*.py")
        if path.name != "messages.py" and f'"{kind}"' in path.read_text()
    ]
    assert users, f"{kind} is declared but nothing emits it"


@pytest.mark.parametrize("kind", KINDS)
def test_every_example_is_an_event_of_its_kind_on_its_subject(kind: str) -> None:
    examples = re.findall(r"```json\n(.*?)\n```", sections()[kind], flags=re.DOTALL)
    assert examples, f"no example for {kind}"
    for example in examples:
        service = msgspec.json.decode(example)["service"]
        event = decode(subjects.event(kind, service), example.encode())
        assert isinstance(event, Event)
        assert event.kind == kind
        # An incarnation's arrival has one id, whichever of the two kinds a node calls it.
        prefix = event.id.split(":", 1)[0]
        assert prefix == kind or (prefix == "arrival" and kind in ARRIVALS)


def test_the_readme_lists_every_kind_and_links_the_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    events = readme.split("- **Events**", 1)[1].split("\n\n", 1)[0]
    assert "docs/events.md" in events
    listed = {
        f"{family}.{what}"
        for family, whats in re.findall(r"`([a-z]+)\.([a-z_/]+)`", events)
        for what in whats.split("/")
    }
    assert listed == set(KINDS)
