"""mesh.forwarding.defaults: every MESH_* setting reaches a Service document that leaves it out.

The cases come from the settings model: a setting marked with the Service field it fills
is tested here without being listed, and every Service field is either filled by a
setting or named below as one only documents set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

import msgspec
import pytest
from msgspec import inspect
from pydantic.fields import FieldInfo

from mesh import config
from mesh.bus.kv import KvEntry
from mesh.errors import ConfigError
from mesh.forwarding.defaults import default_service
from mesh.forwarding.policy_feed import decode
from mesh.policy.compile import ServicePolicy, service_policy
from mesh.policy.fields import enc_hook
from mesh.policy.service import Service
from policies.loader import load_text
from policies.plan import plan

FILLED = config.service_fields()  # setting -> Service field path
# Service fields no setting fills: documents give them, else the runtime defaults hold.
DOCUMENT_ONLY = {
    "balance.hash",
    "balance.ewma_decay",
    "balance.default_rtt",
    "retries.backoff.base",
    "retries.backoff.cap",
    "retries.budget.ratio",
    "retries.budget.min_per_second",
    "access",
    "preload",
}
# Values for settings whose type says too little to make one up.
GIVEN = {"retry_on": "5xx,reset"}
ZONE = "eu-1"  # so that zone_aware changes the compiled policy


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("MESH_"):
            monkeypatch.delenv(name)


def _leaves(kind: Any, prefix: str = "") -> Iterator[str]:
    for field in kind.fields:
        inner = field.type
        while isinstance(inner, inspect.Metadata):
            inner = inner.type
        if isinstance(inner, inspect.StructType) and field.name != "hash":
            yield from _leaves(inner, f"{prefix}{field.name}.")
        elif field.name not in ("kind", "name"):
            yield f"{prefix}{field.name}"


def test_every_service_field_is_filled_by_a_setting_or_is_document_only() -> None:
    leaves = set(_leaves(inspect.type_info(Service)))
    assert set(FILLED.values()) | DOCUMENT_ONLY == leaves
    assert not set(FILLED.values()) & DOCUMENT_ONLY
    assert len(set(FILLED.values())) == len(FILLED)  # one setting per field


def other_value(name: str, field: FieldInfo) -> str:
    """A valid value of the setting, unlike its default, as an environment variable holds it."""
    if name in GIVEN:
        return GIVEN[name]
    default, kind = field.default, field.annotation
    if kind is bool:
        return str(not default).lower()
    if get_origin(kind) is Literal:
        return str(next(value for value in get_args(kind) if value != default))
    if default is None:
        return "1"
    most = min((m.le for m in field.metadata if hasattr(m, "le")), default=math.inf)
    if kind is int:
        return str(default + 1 if default + 1 <= most else default - 1)
    if kind is float:
        return str(default * 2 if 0 < default * 2 <= most else default / 2 or 1.0)
    raise AssertionError(f"give MESH_{name.upper()} a value in GIVEN: its type is {kind}")


def _at(document: Service, path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _written(path: str) -> list[dict[str, Any]]:
    """Service documents that leave `path` out: the whole section, or only that field."""
    section, _, _ = path.rpartition(".")
    documents: list[dict[str, Any]] = [{"kind": "Service", "name": "orders"}]
    if section:
        given = msgspec.to_builtins(_at(default_service(config.load()), section), enc_hook=enc_hook)
        del given[path.rpartition(".")[2]]
        nested: dict[str, Any] = {"kind": "Service", "name": "orders"}
        *outer, last = section.split(".")
        place = nested
        for part in outer:
            place = place.setdefault(part, {})
        place[last] = given
        documents.append(nested)
    return documents


CASES = [
    pytest.param(name, path, document, id=f"MESH_{name.upper()}-{'section' if i else 'all'}-out")
    for name, path in FILLED.items()
    for i, document in enumerate(_written(path))
]


@pytest.mark.parametrize(("name", "path", "document"), CASES)
def test_a_setting_reaches_a_service_document_that_leaves_its_field_out(
    monkeypatch: pytest.MonkeyPatch, name: str, path: str, document: dict[str, Any]
) -> None:
    mesh = default_service(config.load())  # no MESH_* variable set
    # The CLI validates and stores with its own settings (here: none set)...
    loaded = load_text(msgspec.json.encode(document), defaults=mesh)
    assert loaded.ok, [str(p) for p in loaded.errors]
    [change] = plan(loaded.documents, {}, prune=False)
    # ...and the node that reads it fills what it leaves out from its own.
    monkeypatch.setenv(
        f"MESH_{name.upper()}", other_value(name, config.Settings.model_fields[name])
    )
    node = default_service(config.load())
    decoded = decode(KvEntry(change.key, change.value, 1, 0.0), node)
    assert isinstance(decoded, Service), decoded
    assert _at(decoded, path) == _at(node, path) != _at(mesh, path)
    compiled = service_policy(decoded, zone=ZONE)
    assert compiled == service_policy(node, zone=ZONE) != service_policy(mesh, zone=ZONE)


def test_without_settings_a_node_runs_the_runtime_objects_defaults() -> None:
    assert service_policy(default_service(config.load()), zone="") == ServicePolicy()


def test_retries_given_in_part_keep_the_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect this fixed: MESH_RETRY_ATTEMPTS=5 did not reach a document without retries."""
    monkeypatch.setenv("MESH_RETRY_ATTEMPTS", "5")
    monkeypatch.setenv("MESH_RETRY_ON", "5xx")
    node = default_service(config.load())
    for written, attempts in ((b"{}", 5), (b'{"attempts": 3}', 3)):
        value = b'{"kind":"Service","name":"orders","retries":%s}' % written
        decoded = decode(KvEntry("service.orders", value, 1, 0.0), node)
        assert isinstance(decoded, Service)
        assert (decoded.retries.attempts, decoded.retries.on) == (attempts, ("5xx",))


def test_a_node_rejects_what_its_own_settings_make_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = b'{"kind":"Service","name":"orders","timeouts":{"request":"5s"}}'
    entry = KvEntry("service.orders", value, 4, 0.0)
    assert isinstance(decode(entry, default_service(config.load())), Service)
    monkeypatch.setenv("MESH_PER_TRY_TIMEOUT", "10")
    assert decode(entry, default_service(config.load())) == (
        "mesh_policies/service.orders@4 timeouts.per_try = 10.0: must not exceed request "
        "(left out here, so this node's MESH_* settings give it)"
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"MESH_RETRY_ON": "reset,teapot"}, "MESH_RETRY_ON=reset,teapot: expected one of 5xx"),
        ({"MESH_RETRY_ON": "404"}, "MESH_RETRY_ON=404: expected one of 5xx"),
        (
            {"MESH_PER_TRY_TIMEOUT": "20"},
            "MESH_PER_TRY_TIMEOUT=20.0: must not exceed request",
        ),
        (
            {"MESH_OUTLIER_BASE_EJECTION": "600"},
            "MESH_OUTLIER_MAX_EJECTION=300.0: must not be below base_ejection",
        ),
        ({"MESH_MAX_REQUESTS": "2000000"}, "MESH_MAX_REQUESTS=2000000: expected an integer"),
    ],
)
def test_settings_no_document_could_hold_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        default_service(config.load())
    assert str(caught.value).startswith(message)
