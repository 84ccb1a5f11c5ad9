"""What consistent hashing hashes: a request header, a cookie or the client address."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Header = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class HashSource:
    kind: Literal["header", "cookie", "client_address"] = "client_address"
    name: str = ""  # the header's (any case) or the cookie's (exact case); unused for addresses


def hash_key(source: HashSource, headers: Sequence[Header], client: bytes) -> bytes | None:
    """The request's key, or None when it has none (the balancer then picks at random).

    An empty value counts as none: hashing it would pin every such request to one endpoint.
    The first occurrence wins when a header or cookie is repeated.
    """
    if source.kind == "client_address":
        return client or None
    if source.kind == "header":
        wanted = source.name.lower().encode()
        for name, value in headers:
            if name.lower() == wanted:
                return value or None
        return None
    wanted = source.name.encode()
    for name, value in headers:
        if name.lower() == b"cookie":
            for pair in value.split(b";"):
                cookie, equals, content = pair.strip().partition(b"=")
                if equals and cookie == wanted:
                    return content or None
    return None
