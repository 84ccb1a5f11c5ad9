"""Fuzzing the policy loader: any text, document or stored value is a clean error or a policy.

Policy files come from operators and the bucket from whoever may write it; neither may
crash or stall `mesh policy` or a node. YAML is built from the policy grammar's own
keys with hostile scalars (huge and odd numbers, tags, anchors, merge keys, control
characters) and nesting past the depth limit. `make fuzz` runs it longer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from factories import service_defaults
from hypothesis import given
from hypothesis import strategies as st

from mesh.bus.kv import KvEntry
from mesh.forwarding.policy_feed import decode as decode_entry
from mesh.policy.decode import parse
from mesh.policy.problem import Problem
from policies.loader import load_text

pytestmark = pytest.mark.fuzz

DEFAULTS = service_defaults()
EXAMPLES = sorted(Path("policies/examples").glob("*.yaml"))
KEYS = [
    "kind", "name", "match", "to", "hosts", "path_prefix", "path_exact", "path_regex",
    "methods", "headers", "service", "weight", "subset", "timeouts", "connect", "request",
    "per_try", "retries", "attempts", "on", "backoff", "budget", "balance", "algorithm",
    "rate_limit", "key", "access", "allow_from", "outlier", "circuit", "exact", "regex",
    "present", "<<", "? complex", "",
]  # fmt: skip
SCALARS = [
    "Route", "Service", "web", "0", "-1", "1.5", "2s", "250ms", "1h30m", "0s", "-5s",
    "9" * 5000, "1e999", "-1e999", ".inf", ".nan", "0x1F", "0o17", "1_000", "~", "null",
    "yes", "on", "2024-01-01", "!!binary aGk=", "!!python/object/apply:os.system [ls]",
    "!!set {a}", "!!float 1", "!!str 3", "&a x", "*a", "'quoted'", '"\\x00\\u202e"',
    "^(a+)+$", "[a-", "/", "*.example.com", "|\n  block", "\t", "\x85", "\ufeff", "%TAG",
    "connect-failure", "least_request", "consistent_hash", "header:x-user",
]  # fmt: skip
leaves = st.sampled_from(SCALARS) | st.integers().map(str) | st.text(max_size=12).map(json.dumps)


def block(value: Any, indent: int) -> str:
    """`value` (nested dicts/lists of raw YAML scalars) as block YAML."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "".join(f"\n{pad}{key}: {block(item, indent + 2)}" for key, item in value.items())
    if isinstance(value, list):
        if not value:
            return "[]"
        return "".join(f"\n{pad}- {block(item, indent + 2)}" for item in value)
    return str(value)


trees = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from(KEYS), trees, max_size=6).map(
    lambda fields: {"kind": "Route", "name": "r", **fields}
)


@st.composite
def deep(draw: st.DrawFn) -> str:
    """Flow-style nesting around the depth limit, of lists or mappings."""
    depth = draw(st.integers(1, 200))
    opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
    return f"kind: Route\nname: r\nmatch: {opening * depth}1{closing * depth}\n"


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """A shipped example with a few characters replaced."""
    text = list(draw(st.sampled_from(EXAMPLES)).read_text())
    for _ in range(draw(st.integers(1, 5))):
        text[draw(st.integers(0, len(text) - 1))] = draw(
            st.sampled_from(list(":-[]{}&*!|>'\"#\t\n 0"))
        )
    return "".join(text)


texts = (
    documents.map(lambda d: block(d, 0).lstrip("\n"))
    | st.lists(documents.map(lambda d: block(d, 0)), max_size=3).map("\n---".join)
    | deep()
    | mutated_example()
    | st.text(max_size=200)
)


@given(text=texts)
def test_any_policy_text_loads_or_is_a_clean_error(text: str) -> None:
    loaded = load_text(text, defaults=DEFAULTS)
    assert loaded.ok == (not loaded.errors)
    for problem in (*loaded.errors, *loaded.warnings):
        assert str(problem)


odd_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=4)
    | st.sampled_from(SCALARS),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers(), max_size=2)
        | st.dictionaries(st.sampled_from(KEYS) | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=8,
)


@given(
    obj=st.dictionaries(st.sampled_from(KEYS), odd_values, max_size=6),
    kind=st.sampled_from(["Route", "Service", "Other", None]),
)
def test_any_builtins_decode_to_a_document_or_a_problem(obj: dict[Any, Any], kind: Any) -> None:
    obj["kind"] = kind
    result = parse(obj, DEFAULTS, file="fuzz")
    if isinstance(result, Problem):
        assert str(result)


@given(
    value=st.binary(max_size=100)
    | odd_values.map(lambda v: msgspec.json.encode(v, enc_hook=repr))
    | st.integers(1, 5000).map(lambda depth: b'{"kind":"Route","match":' + b"[" * depth)
    | st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth)
)
def test_any_stored_value_is_a_document_or_a_reason(value: bytes) -> None:
    entry = KvEntry(key="route.r", value=value, revision=1, created=0.0)
    result = decode_entry(entry, DEFAULTS)
    assert not isinstance(result, str) or result


def deepest_list_msgspec_decodes() -> int:
    """How deep a JSON list may nest for msgspec here (it depends on the stack in use)."""
    low, high = 1, 100_000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            msgspec.json.decode(b"[" * middle + b"]" * middle)
        except RecursionError:
            high = middle - 1
        else:
            low = middle
    return low


@pytest.mark.parametrize("extra", [0, 1, 100_000], ids=["decodable", "just-not", "far-not"])
def test_a_deeply_nested_stored_value_is_a_reason(extra: int) -> None:
    # Just decodable, its repr (a few frames deeper) used to raise RecursionError.
    depth = deepest_list_msgspec_decodes() + extra
    value = b"[" * depth + b"]" * depth
    entry = KvEntry(key="route.r", value=value, revision=1, created=0.0)
    assert isinstance(decode_entry(entry, DEFAULTS), str)
