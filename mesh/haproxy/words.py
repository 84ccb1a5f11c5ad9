"""How values are written into an HAProxy configuration: quoted words and durations."""

from __future__ import annotations


def quote(text: str) -> str:
    """`text` as one configuration word, taken literally (no escapes, no `${VAR}`)."""
    if "'" not in text:
        return f"'{text}'"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def ms(seconds: float) -> str:
    """A duration in HAProxy's syntax, at its millisecond resolution (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def address(host: str, port: int) -> str:
    """A bind or server address; IPv6 literals need HAProxy's `ipv6@` prefix."""
    return f"ipv6@{host}:{port}" if ":" in host else f"{host}:{port}"
