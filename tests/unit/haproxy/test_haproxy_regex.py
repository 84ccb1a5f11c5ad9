"""mesh.haproxy.regex_cfg: policy regexes as PCRE2 patterns that match the same whole text."""

from __future__ import annotations

import pytest

from mesh.haproxy.regex_cfg import pcre


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("/r/[^/]+", r"(?s)\A(?:/r/[^/]+)\z"),
        (r"a\Z", r"(?s)\A(?:a\z)\z"),  # Python's \Z is PCRE2's \z
        (r"[\Z]", r"(?s)\A(?:[\Z])\z"),  # not inside a class (an error to Python anyway)
        (r"\v", r"(?s)\A(?:\x0b)\z"),  # PCRE2's \v is every vertical space
        ("a{,3}", r"(?s)\A(?:a{0,3})\z"),  # a literal to PCRE2 before 10.43
        ("it's", r"(?s)\A(?:it\x27s)\z"),  # the config quotes in single quotes
        ("[]a]", r"(?s)\A(?:[\]a])\z"),
        ("[^]a]", r"(?s)\A(?:[^\]a])\z"),
        ("(?i)/API", r"(?s)\A(?:(?i)/API)\z"),
        ("(?P<v>v[0-9]+)", r"(?s)\A(?:(?P<v>v[0-9]+))\z"),
    ],
)
def test_translation(policy: str, expected: str) -> None:
    assert pcre(policy) == expected


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ("[[:alpha:]]", "POSIX class"),
        ("(?x)a b", "inline flag x"),
        ("(?a)\\w", "inline flag a"),
    ],
)
def test_what_pcre2_reads_otherwise_is_refused(policy: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        pcre(policy)
