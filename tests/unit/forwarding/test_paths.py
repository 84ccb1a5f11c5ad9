"""mesh.forwarding.paths: the one normalised path that routes match and upstreams receive."""

from __future__ import annotations

import pytest

from mesh.errors import BadRequest
from mesh.forwarding.paths import normalize


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", b"/"),
        (b"/a/b?c=d", b"/a/b?c=d"),  # the usual: returned as it is
        (b"/a/./b", b"/a/b"),
        (b"/a/b/../c", b"/a/c"),
        (b"/a/b/..", b"/a/"),  # RFC 3986 5.2.4: a final dot segment leaves its slash
        (b"/a/.", b"/a/"),
        (b"/a/..", b"/"),
        (b"/.well-known/x", b"/.well-known/x"),  # a name starting with a dot is no dot segment
        (b"/a../b.", b"/a../b."),
        (b"//a///b//", b"/a/b/"),
        (b"/a?x=/../&y=%2F", b"/a?x=/../&y=%2F"),  # the query is not the path
        (b"/%41%7a%30%2D%2e%5F%7E", b"/Az0-._~"),
        (b"/a/%2e%2e/b", b"/b"),  # decoded first (6.2.2.2), then a dot segment (6.2.2.3)
        (b"/a/%2E/b", b"/a/b"),
        (b"/caf%c3%a9?q", b"/caf%C3%A9?q"),  # kept encoded, hex digits in upper case
        (b"/a%20b%25", b"/a%20b%25"),
        (b"http://svc/a/../b?q", b"http://svc/b?q"),  # absolute-form: its path
        (b"http://svc", b"http://svc/"),
        (b"http://svc?a=/./", b"http://svc/?a=/./"),
        (b"*", b"*"),
    ],
)
def test_normalize(target: bytes, expected: bytes) -> None:
    assert normalize(target) == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (b"/..", "above the root"),
        (b"/a/../../b", "above the root"),
        (b"/%2e%2e/b", "above the root"),
        (b"//../b", "above the root"),
        (b"/a%2Fb", "encoded '/'"),
        (b"/a%2fb", "encoded '/'"),
        (b"/a%5Cb", "encoded '.' in"),
        (b"/a%zz", "percent-encoding"),
        (b"/a%4", "percent-encoding"),
        (b"/a%", "percent-encoding"),
        (b"/a/..;/b", "parameter"),
        (b"/a/.;x/b", "parameter"),
        (b"http://svc/../x", "above the root"),
    ],
)
def test_paths_that_cannot_be_normalised_safely_are_refused(target: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        normalize(target)
