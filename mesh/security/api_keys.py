"""API keys at the edge: stored as SHA-256 digests, looked up in constant time (pure)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import NamedTuple


class KeyHolder(NamedTuple):
    """Who a presented key belongs to, and its digest (what per-key rate limits count)."""

    consumer: str
    digest: str  # lower-case hex, as the policy stores it


def hash_key(key: bytes) -> str:
    """A key as policy documents store it: its SHA-256 in lower-case hex."""
    return hashlib.sha256(key).hexdigest()


class ApiKeys:
    """The keys of one route: SHA-256 digests (hex) and the consumer each belongs to."""

    __slots__ = ("_holders",)

    def __init__(self, keys: Iterable[tuple[str, str]]) -> None:
        self._holders = [(bytes.fromhex(digest), consumer) for digest, consumer in keys]

    def holder(self, key: bytes) -> KeyHolder | None:
        """Whose key this is, or None.

        Every stored digest is compared, each in constant time, so how long the lookup
        takes says nothing about which digest (or how much of one) the key came close to.
        """
        digest = hashlib.sha256(key).digest()
        found: KeyHolder | None = None
        for stored, consumer in self._holders:
            if hmac.compare_digest(stored, digest) and found is None:
                found = KeyHolder(consumer, stored.hex())
        return found
