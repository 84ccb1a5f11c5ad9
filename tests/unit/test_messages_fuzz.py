"""Fuzzing wire-message decoding: any payload on any subject is a message or InvalidMessage.

The shells (discovery, census, the evidence feed) count and drop InvalidMessage and let
anything else escape, so no other exception may come out of `decode`; what it accepts
must encode back to itself and be applicable to a view. `make fuzz` runs it longer.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from factories import event, evidence, full_heartbeat, heartbeat, leave, sync
from hypothesis import given
from hypothesis import strategies as st

from mesh import subjects
from mesh.errors import InvalidMessage
from mesh.membership import view as membership
from mesh.messages import Message, decode, encode
from mesh.timing import PRESETS

pytestmark = pytest.mark.fuzz

VALID: list[Message] = [heartbeat(), full_heartbeat(), leave(), sync(), evidence(), event()]
SUBJECTS = [
    subjects.heartbeat("orders", "i1"),
    subjects.leave("orders", "i1"),
    subjects.evidence("gateway", "orders", "i1"),
    subjects.SYNC,
    subjects.event("instance.up", "orders"),
    "mesh.v1.hb.orders.i1.extra",
    "mesh.v1.hb.orders",
    "mesh.v1.hb",
    "mesh.v1",
    "",
    "mesh.v1.hb.orders.i1\n",
    "mesh.v1.events.instance.up",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["orders", "i1", "hb", "passing", "agent", "refused", "instance.up", "0"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["type", "service", "instance", "host", "port", "incarnation", "seq", "load", "meta"]


@st.composite
def altered(draw: st.DrawFn) -> bytes:
    """A valid message with fields replaced, removed or added, then written as JSON."""
    fields: dict[str, Any] = msgspec.to_builtins(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*fields, *FIELDS]))
        if draw(st.booleans()):
            fields[name] = draw(json_values)
        else:
            fields.pop(name, None)
    # allow_nan: NaN and Infinity tokens are not JSON, and a decoder must say so.
    return json.dumps(fields, allow_nan=True).encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message's bytes with a few bytes replaced."""
    data = bytearray(encode(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.sampled_from(b'"{}[],:0-9.eE\\\x00\xff '))
    return bytes(data)


payloads = (
    altered()
    | mutated()
    | st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value, allow_nan=True).encode())
    | st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 5000).map(lambda depth: b'{"type":"hb","meta":' * depth)
)


@given(subject=st.sampled_from(SUBJECTS) | st.text(max_size=40), data=payloads)
def test_any_payload_is_a_message_or_invalid(subject: str, data: bytes) -> None:
    try:
        message = decode(subject, data)
    except InvalidMessage:
        return  # the one exception the shells count and drop
    assert decode(subject, encode(message)) == message
    view = membership.View(timing=PRESETS["lan"])
    membership.apply(view, message, 0.0)
