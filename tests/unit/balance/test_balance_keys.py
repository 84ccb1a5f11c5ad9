"""mesh.balance.keys: the consistent-hash key of a request, from a header, cookie or address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.balance.keys import HashSource, Header, hash_key

HEADER = HashSource("header", "X-User")
COOKIE = HashSource("cookie", "session")
ADDRESS = HashSource()


@pytest.mark.parametrize(
    ("source", "headers", "client", "expected"),
    [
        (ADDRESS, [], b"10.1.2.3", b"10.1.2.3"),
        (ADDRESS, [], b"", None),
        (HEADER, [(b"x-user", b"42")], b"10.1.2.3", b"42"),
        (HEADER, [(b"X-USER", b"42")], b"", b"42"),  # header names: any case
        (HEADER, [(b"x-user", b"1"), (b"x-user", b"2")], b"", b"1"),  # the first one
        (HEADER, [(b"x-other", b"42")], b"10.1.2.3", None),
        (HEADER, [(b"x-user", b"")], b"", None),  # empty: no key
        (COOKIE, [(b"Cookie", b"session=abc")], b"", b"abc"),
        (COOKIE, [(b"cookie", b"a=1; session=abc; b=2")], b"", b"abc"),
        (COOKIE, [(b"cookie", b"a=1"), (b"cookie", b"session=abc")], b"", b"abc"),
        (COOKIE, [(b"cookie", b"session=a=b")], b"", b"a=b"),  # '=' inside a value
        (COOKIE, [(b"cookie", b"Session=abc")], b"", None),  # cookie names: exact case
        (COOKIE, [(b"cookie", b"session; x=1")], b"", None),  # a name without '='
        (COOKIE, [(b"cookie", b"session=")], b"", None),
        (COOKIE, [(b"x-session", b"session=abc")], b"", None),
        (COOKIE, [], b"10.1.2.3", None),
    ],
)
def test_hash_key(
    source: HashSource, headers: list[Header], client: bytes, expected: bytes | None
) -> None:
    assert hash_key(source, headers, client) == expected


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


@given(name=token, value=token, before=st.lists(st.tuples(token, token), max_size=4))
def test_a_cookie_is_found_among_others(
    name: str, value: str, before: list[tuple[str, str]]
) -> None:
    others = [(n, v) for n, v in before if n != name]
    cookie = "; ".join(f"{n}={v}" for n, v in [*others, (name, value)])
    headers = [(b"cookie", cookie.encode())]
    assert hash_key(HashSource("cookie", name), headers, b"") == value.encode()
