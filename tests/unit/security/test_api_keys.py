"""mesh.security.api_keys: keys are known by their SHA-256 digest only."""

from __future__ import annotations

import hashlib

from mesh.security.api_keys import ApiKeys, KeyHolder, hash_key


def test_the_hash_is_the_sha256_of_the_key_in_lower_case_hex() -> None:
    assert hash_key(b"demo") == hashlib.sha256(b"demo").hexdigest()
    assert len(hash_key(b"demo")) == 64


def test_a_key_is_found_by_its_digest_and_nothing_else_is() -> None:
    keys = ApiKeys([(hash_key(b"k-alice"), "alice"), (hash_key(b"k-bob"), "bob")])
    assert keys.holder(b"k-bob") == KeyHolder("bob", hash_key(b"k-bob"))
    assert keys.holder(b"k-alice") == KeyHolder("alice", hash_key(b"k-alice"))
    assert keys.holder(hash_key(b"k-bob").encode()) is None  # the digest is not the key
    assert keys.holder(b"") is None
    assert keys.holder(b"k-bo") is None
