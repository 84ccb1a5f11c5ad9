"""mesh.addresses: listen addresses as people write them, and back."""

from __future__ import annotations

import re

import pytest

from mesh.addresses import hostport, parse_hostport
from mesh.errors import ConfigError

HOSTPORTS: list[tuple[str, tuple[str, int]]] = [
    ("example.com:80", ("example.com", 80)),
    ("10.1.2.3:8000", ("10.1.2.3", 8000)),
    (":8000", ("127.0.0.1", 8000)),
    ("8000", ("127.0.0.1", 8000)),
    ("[::1]:80", ("::1", 80)),
    ("[::]:0", ("::", 0)),
    ("[fe80::1%eth0]:443", ("fe80::1%eth0", 443)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("  host:80  ", ("host", 80)),
]


@pytest.mark.parametrize(("text", "expected"), HOSTPORTS)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


def test_parse_hostport_default_host() -> None:
    assert parse_hostport(":9", default_host="0.0.0.0") == ("0.0.0.0", 9)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host",
        "host:",
        "host:http",
        "host:-1",
        "host:65536",
        "[::1]",  # no port
        "::1",  # IPv6 without brackets: ambiguous, must not become (":", 1)
        "fe80::1:80",
        "host:80:90",
        "[::1:80",  # unbalanced brackets
        "a]:80",
        "host:8_0",  # int() would read 80
        "host:+80",
        "host: 80",
    ],
)
def test_parse_hostport_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(text))):
        parse_hostport(text)


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", "127.0.0.1:80"), ("::1", "[::1]:80")])
def test_addresses_are_written_as_people_write_them(host: str, expected: str) -> None:
    assert hostport(host, 80) == expected
    assert parse_hostport(expected) == (host, 80)
