"""Field types of policy documents: names, durations, safe regexes, hosts, paths, headers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from mesh import durations
from mesh.messages import Name
from mesh.policy import regex

MAX_SECONDS = 86_400
DURATION_HELP = durations.HELP


class Duration(float):
    """Seconds in (0, 1 day], written in the grammar of mesh.durations ("250ms", "1h30m", 2)."""

    __slots__ = ()


class Regex(str):
    """A regular expression that passed `regex.check`: safe to match on request bytes."""

    __slots__ = ()


def parse_duration(value: object) -> Duration:
    """A document's duration, else ValueError/TypeError saying what is accepted."""
    seconds = durations.parse(value)
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"expected {DURATION_HELP}, above 0 and at most 24h")
    return Duration(seconds)


def dec_hook(kind: type, value: Any) -> Any:
    """msgspec decoding of the custom field types."""
    if kind is Duration:
        return parse_duration(value)
    if kind is Regex:
        if not isinstance(value, str):
            raise TypeError("expected a regular expression string")
        try:
            regex.check(value)
        except ValueError as exc:
            raise ValueError(f"regex rejected: {exc}") from None
        return Regex(value)
    raise NotImplementedError(kind)


def enc_hook(value: Any) -> Any:
    """msgspec encoding of the custom field types: durations as seconds, regexes as text."""
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, Regex):
        return str(value)
    raise NotImplementedError(type(value))


PolicyName = Annotated[
    Name, msgspec.Meta(description="a name of letters, digits, '_' and '-' (1 to 128)")
]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HostName = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^{_LABEL}(?:\.{_LABEL})*\Z",
        max_length=253,
        description="a host name such as api.example.com",
    ),
]
HostPattern = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\Z",
        max_length=253,
        description="a host name such as api.example.com, or *.example.com for its subdomains",
    ),
]
# Visible ASCII without '?' and '#': those end a path, so a prefix holding one never matches.
UrlPath = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^/[!-\"$->@-~]*\Z",
        max_length=1024,
        description="a path starting with '/' (visible ASCII, no '?' or '#')",
    ),
]
Method = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{1,16}\Z", description="an HTTP method in capitals, as GET")
]
Token = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}\Z",
        description="an HTTP token such as x-user-id (1 to 64 characters)",
    ),
]
HeaderValue = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[ -~]*\Z", max_length=1024, description="visible ASCII (at most 1024 characters)"
    ),
]
RateKey = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:client_address|consumer|api_key|header:[A-Za-z0-9-]{1,64})\Z",
        description="client_address, consumer, api_key or header:<name>",
    ),
]
