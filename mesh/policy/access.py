"""Who may call a service: the `access` section of a Service document, and its decision."""

from __future__ import annotations

from typing import Annotated

import msgspec

ANYONE = "*"  # any caller with a mesh identity

Caller = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:\*|[A-Za-z0-9_-]{1,128})\Z",
        description="a service name (letters, digits, '_' and '-') or *",
    ),
]


class Access(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`allow_from`: the services (or `*`, any service) whose agents may call this one;
    the callee's agent checks the caller's certificate, so it needs mTLS on."""

    allow_from: Annotated[tuple[Caller, ...], msgspec.Meta(max_length=256)]


def allowed(allow_from: frozenset[str] | None, caller: str | None) -> bool:
    """Whether `caller` (a service name from a verified certificate; None: a caller that
    showed none) may call. `allow_from` None: the service has no access rules."""
    if allow_from is None:
        return True
    if caller is None:
        return False
    return ANYONE in allow_from or caller in allow_from
