"""Policy documents from untrusted builtins (YAML or JSON), or a Problem saying exactly why not."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect

from mesh.policy.fields import DURATION_HELP, Duration, Regex, dec_hook, enc_hook
from mesh.policy.model import KINDS, Document
from mesh.policy.problem import Problem
from mesh.policy.service import Service

Step = str | int | None  # a field, a list index, or a mapping key msgspec does not name

# Policy documents nest at most this deep, written as YAML (policies.safe_yaml) or stored
# as JSON: deeper is never a policy, and would exhaust the stack in msgspec or repr.
MAX_DEPTH = 32

_DOCUMENT = inspect.type_info(Document)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_FIELD = re.compile(r"Object (contains unknown|missing required) field `([^`]+)`")
_OWN = re.compile(r"([a-z_]+): (.+)", re.S)  # a check of ours about one field of its struct
_CUSTOM = {Duration: DURATION_HELP, Regex: "a regex (RE2 subset) matching the whole value"}
# Fields where a mistake may be a secret (a plain API key, an HS256 secret pasted as a
# public key): problems go to terminals, logs and policy.rejected events, so never shown.
_SECRET = re.compile(r"auth\.(?:keys\[\d+\]\.\w+|public_key)")
HIDDEN = "<not shown>"


def parse(
    obj: object, defaults: Service | None, *, file: str = "", doc_index: int | None = 0
) -> Document | Problem:
    """`obj` as a Document, or a Problem naming the field path, the value and what is accepted.

    A Service document gives only some fields: every field it leaves out, at any depth,
    comes from `defaults` (a node's settings-made Service), and the checks across fields
    (per_try <= request, ...) hold for the result. None: `obj` must give every field.
    """
    if _deeper_than(obj, MAX_DEPTH):
        message = f"nested deeper than {MAX_DEPTH}"
        return Problem(
            file=file, doc_index=doc_index, path="", value=msgspec.UNSET, message=message
        )
    if not isinstance(obj, dict):
        message = f"expected a mapping with kind {' or '.join(KINDS)}"
        return Problem(file=file, doc_index=doc_index, path="", value=obj, message=message)
    written = obj
    if defaults is not None and obj.get("kind") == "Service":
        base = msgspec.to_builtins(defaults, enc_hook=enc_hook)
        del base["name"]  # the defaults' own name ("default") is never a document's
        obj = _over(base, obj)
    try:
        document: Document = msgspec.convert(obj, Document, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        steps, value, message = _explain(str(exc), obj)
        if steps and _value_at(steps, written) is msgspec.UNSET and value is not msgspec.UNSET:
            message += " (left out here, so this node's MESH_* settings give it)"
        path = _dotted(steps)
        if _SECRET.fullmatch(path) and value is not msgspec.UNSET:
            value = HIDDEN
        return Problem(file=file, doc_index=doc_index, path=path, value=value, message=message)
    return document


def _deeper_than(obj: object, limit: int) -> bool:
    """True if `obj` nests more than `limit` levels of containers and values (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((value, depth + 1) for value in node)
    return False


def _over(defaults: dict[str, Any], written: dict[Any, Any]) -> dict[Any, Any]:
    """`written` with each field it leaves out, at any depth, taken from `defaults`."""
    merged: dict[Any, Any] = dict(defaults)
    for name, value in written.items():
        below = merged.get(name)
        merged[name] = (
            _over(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
        )
    return merged


def _explain(error: str, obj: object) -> tuple[list[Step], Any, str]:
    """A msgspec validation error about `obj` as (field path, offending value, message)."""
    message, at, where = error.rpartition(" - at ")
    if not at:
        message, where = error, "`$`"
    steps: list[Step] = [
        name or (int(index) if index.isdigit() else None)
        for name, index in _STEP.findall(where.removeprefix("`key` in ").strip("`$"))
    ]
    kind = _type_at(steps, obj)
    field = _FIELD.fullmatch(message)
    own = _OWN.fullmatch(message)
    if field:
        steps.append(field[2])
        if field[1] == "missing required":
            wanted = _describe(_type_at(steps, obj))
            return steps, msgspec.UNSET, f"required field missing: expected {wanted}"
        message = f"unknown field; expected one of {', '.join(_fields(kind))}"
    elif where.startswith("`key`"):
        keys = _describe(kind.key_type) if isinstance(kind, inspect.DictType) else "field names"
        message = f"expected keys that are {keys}"
    elif message[:1].isupper():  # msgspec's own wording: say what is accepted instead
        message = f"expected {_describe(kind)}"
    elif own and own[1] in _fields(kind):
        steps.append(own[1])
        message = own[2]
    return steps, _value_at(steps, obj), message


def _type_at(steps: list[Step], obj: object) -> Any:
    kind: Any = _DOCUMENT
    node: Any = obj
    for step in steps:
        kind = _resolve(kind, node)
        node = _child(node, step)
        if isinstance(kind, inspect.StructType | inspect.UnionType) and step == _tag_field(kind):
            return inspect.LiteralType(values=_tags(kind))
        if isinstance(kind, inspect.StructType):
            kind = next((f.type for f in kind.fields if f.name == step), None)
        elif isinstance(kind, inspect.VarTupleType | inspect.ListType):
            kind = kind.item_type
        elif isinstance(kind, inspect.DictType):
            kind = kind.value_type
    return _resolve(kind, node)


def _resolve(kind: Any, node: Any) -> Any:
    """Strip metadata and `| None`; pick a tagged union's member by the tag `node` carries."""
    while True:
        if isinstance(kind, inspect.Metadata) and not _description(kind):
            kind = kind.type
        elif isinstance(kind, inspect.UnionType):
            members = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
            tag = node.get(_tag_field(kind)) if isinstance(node, dict) else None
            tagged = [t for t in members if isinstance(t, inspect.StructType) and t.tag == tag]
            if len(tagged) == 1 or len(members) == 1:
                kind = (tagged or members)[0]
            else:
                return kind
        else:
            return kind


def _tag_field(kind: Any) -> str | None:
    if isinstance(kind, inspect.UnionType):
        return next((t.tag_field for t in kind.types if isinstance(t, inspect.StructType)), None)
    return kind.tag_field if isinstance(kind, inspect.StructType) else None


def _tags(kind: Any) -> tuple[Any, ...]:
    members = kind.types if isinstance(kind, inspect.UnionType) else (kind,)
    return tuple(t.tag for t in members if isinstance(t, inspect.StructType))


def _fields(kind: Any) -> list[str]:
    return [f.name for f in kind.fields] if isinstance(kind, inspect.StructType) else []


def _child(node: Any, step: Step) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step, msgspec.UNSET)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return msgspec.UNSET


def _value_at(steps: list[Step], obj: object) -> Any:
    node: Any = obj
    for step in steps:
        if step is None:  # msgspec does not say which key: show the whole mapping
            break
        node = _child(node, step)
    return node


def _dotted(steps: list[Step]) -> str:
    text = "".join(
        f".{step}" if isinstance(step, str) else "[...]" if step is None else f"[{step}]"
        for step in steps
    )
    return text.removeprefix(".")


def _description(kind: inspect.Metadata) -> str:
    return str((kind.extra_json_schema or {}).get("description", ""))


def _describe(kind: Any) -> str:
    """What a value of this type looks like, in words for an error message."""
    if isinstance(kind, inspect.Metadata):
        return _description(kind) or _describe(kind.type)
    if isinstance(kind, inspect.LiteralType):
        return "one of " + ", ".join(str(value) for value in kind.values)
    if isinstance(kind, inspect.UnionType):
        members = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
        if all(isinstance(t, inspect.StructType) and t.tag for t in members):
            return f"a mapping with {_tag_field(kind)} one of {', '.join(map(str, _tags(kind)))}"
        return " or ".join(_describe(t) for t in members)
    if isinstance(kind, inspect.StructType):
        return f"a mapping with fields {', '.join(_fields(kind))}"
    if isinstance(kind, inspect.VarTupleType | inspect.ListType):
        return f"a list{_count(kind.min_length, kind.max_length)} of {_describe(kind.item_type)}"
    if isinstance(kind, inspect.DictType):
        size = _count(kind.min_length, kind.max_length)
        return f"a mapping{size} of {_describe(kind.key_type)} to {_describe(kind.value_type)}"
    if isinstance(kind, inspect.CustomType):
        return _CUSTOM.get(kind.cls, kind.cls.__name__)
    if isinstance(kind, inspect.IntType | inspect.FloatType):
        noun = "an integer" if isinstance(kind, inspect.IntType) else "a number"
        return noun + _bounds(kind.ge, kind.gt, kind.le, kind.lt)
    if isinstance(kind, inspect.BoolType):
        return "true or false"
    if isinstance(kind, inspect.StrType):
        return (
            f"text matching {kind.pattern}"
            if kind.pattern
            else f"text{_count(None, kind.max_length, 'characters')}"
        )
    return "a valid value"


def _count(least: int | None, most: int | None, unit: str = "items") -> str:
    if least and most:
        return f" of {least} to {most} {unit}"
    return f" of at most {most} {unit}" if most else ""


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    if ge is not None and le is not None:
        return f" from {_num(ge)} to {_num(le)}"
    parts = []
    if ge is not None or gt is not None:
        parts.append(f"at least {_num(ge)}" if ge is not None else f"above {_num(gt)}")
    if le is not None or lt is not None:
        parts.append(f"at most {_num(le)}" if le is not None else f"below {_num(lt)}")
    return " " + " and ".join(parts) if parts else ""


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)
