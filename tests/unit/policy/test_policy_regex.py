"""mesh.policy.regex: only backtracking-safe regexes pass, and they match whole values."""

from __future__ import annotations

import time

import pytest

from mesh.policy.regex import MAX_LENGTH, check, compile_bytes

SAFE = [
    r"^/api/v[0-9]+/users/[^/]+$",
    r".*\.json",
    r"/static/.*",
    r".*foo.*",
    r"/api/.*/users/.*",
    r"(GET|POST)",
    r"/(users|groups)/(list|show)",
    r"[a-z]+-[0-9]+",
    r"\d+\.\d+\.\d+",
    r"(?i)/hello/[a-z]+",
    r"^/users/[0-9]+(/.*)?$",
    r"(ab)+c",
    r"/[a-z]{2,8}[0-9]{1,4}",
    r"/a?b?c?",
    r"(a|b)*",  # the parser turns it into the class [ab]: no alternation left
]


@pytest.mark.parametrize("pattern", SAFE)
def test_safe_regexes_pass_and_stay_fast_on_hostile_input(pattern: str) -> None:
    check(pattern)
    compiled = compile_bytes(pattern)
    hostile = [
        b"a" * 10_000,
        b"/" * 10_000,
        b"/api/" + b"a/" * 5_000,
        b"1." * 5_000 + b"x",
        b"foo" * 3_000 + b"\n",
        b"ab" * 5_000,
        b"/users/" + b"9" * 10_000 + b"!",
    ]
    started = time.perf_counter()
    for text in hostile:
        compiled.fullmatch(text)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a+)+$", "repeated group"),
        (r"(a*)*", "repeated group"),
        (r"(a|aa)+", "repeated group"),
        (r"(ab|a)*c", "repeated group"),
        (r"(a?){30}", "repeated group"),
        (r"a*a*a*b", "two repeats"),
        (r"\d+\d+", "two repeats"),
        (r".*.*=.*", "two repeats"),
        (r".*x.*y", "two repeats"),
        (r"[a-z]+[a-c]+x", "two repeats"),
        (r"(?i)a+A+", "two repeats"),
        (r"x*(y?)x*", "two repeats"),
        (r"(a*|b)a*c", "two repeats"),
        (r"(?=a)a", "lookaround"),
        (r"(?!a)b", "lookaround"),
        (r"(?<=a)b", "lookaround"),
        (r"(?<!a)b", "lookaround"),
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "backreferences"),
        (r"(?>a+)b", "atomic"),
        (r"a++b", "possessive"),
        (r"(a)?(?(1)b|c)", "conditional"),
        ("a?" * 11, "ways through"),
        ("(ab|cd)" * 11, "ways through"),
        ("a" * (MAX_LENGTH + 1), "longer than"),
        ("(", "not a valid regex"),
        ("[z-a]", "not a valid regex"),
        ("é+", "not ASCII"),
    ],
)
def test_dangerous_or_unsupported_regexes_are_rejected(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check(pattern)
    with pytest.raises(ValueError, match=reason):
        compile_bytes(pattern)


def test_compiled_regexes_match_bytes_whole_and_dot_takes_any_byte() -> None:
    compiled = compile_bytes(r"/files/.*")
    assert compiled.fullmatch(b"/files/a\nb")
    assert not compiled.fullmatch(b"/x/files/a")
