"""Field types of policy documents: names, durations, safe regexes, hosts, paths, headers."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from mesh.messages import Name
from mesh.policy import regex

MAX_SECONDS = 86_400

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_HELP = "a duration such as 250ms, 1s, 2m or 1h30m (or seconds as a number)"


class Duration(float):
    """Seconds; written in documents as "250ms", "1s", "2m", "1h30m" or a number of seconds."""

    __slots__ = ()


class Regex(str):
    """A regular expression that passed `regex.check`: safe to match on request bytes."""

    __slots__ = ()


def parse_duration(value: object) -> Duration:
    """Seconds in (0, 1 day] from a number or a unit string, else ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected {DURATION_HELP}")
    if isinstance(value, str):
        if not _DURATION.fullmatch(value):
            raise ValueError(f"expected {DURATION_HELP}")
        value = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    # Compared before any float(): YAML can hold a 4000-digit int, and NaN fails both tests.
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"expected {DURATION_HELP}, above 0 and at most 24h")
    return Duration(value)


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
        pattern=r"^(?:client_address|api_key|header:[A-Za-z0-9-]{1,64})\Z",
        description="client_address, api_key or header:<name>",
    ),
]
