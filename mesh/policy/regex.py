"""Policy regexes: the RE2-like subset that Python's backtracking `re` matches without blow-up."""

from __future__ import annotations

import re
from re import _parser  # type: ignore[attr-defined]  # the stdlib's own parser; no public one
from typing import Any

MAX_LENGTH = 256
MAX_PATHS = 1024  # ways through alternations and optional parts, multiplied out

_ALL = frozenset(range(256))  # patterns are compiled as bytes: one byte is one character
_CLASSES = {
    name: frozenset(b for b in range(256) if re.fullmatch(cls, bytes([b])))
    for name, cls in (
        ("CATEGORY_DIGIT", rb"\d"),
        ("CATEGORY_NOT_DIGIT", rb"\D"),
        ("CATEGORY_SPACE", rb"\s"),
        ("CATEGORY_NOT_SPACE", rb"\S"),
        ("CATEGORY_WORD", rb"\w"),
        ("CATEGORY_NOT_WORD", rb"\W"),
    )
}
_CHAR = {"LITERAL", "NOT_LITERAL", "ANY", "IN"}
_REPEAT = {"MAX_REPEAT", "MIN_REPEAT"}
_FORBIDDEN = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookaround assertions",
    "ASSERT_NOT": "lookaround assertions",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}

Open = list[frozenset[int]]  # characters that repeats still open for more input can take


def compile_bytes(pattern: str) -> re.Pattern[bytes]:
    """Check `pattern` and compile it for `fullmatch` on raw request bytes."""
    check(pattern)
    # DOTALL: `.` is every byte, so a final `.*` can never fail and force backtracking.
    return re.compile(pattern.encode("ascii"), re.DOTALL)


def check(pattern: str) -> None:
    """Raise ValueError saying why `pattern` is not a safe policy regex."""
    if len(pattern) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters")
    if not pattern.isascii():
        raise ValueError("not ASCII (match the percent-encoded bytes instead)")
    try:
        tree = _parser.parse(pattern.encode("ascii"))
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc}") from None
    except RecursionError:
        raise ValueError("groups nested too deep") from None
    if _paths(tree.data) > MAX_PATHS:
        raise ValueError(f"more than {MAX_PATHS} ways through its alternatives and optional parts")
    _walk(tree.data, [], tail=True, fold=bool(tree.state.flags & re.IGNORECASE))


def _walk(items: list[Any], run: Open, *, tail: bool, fold: bool) -> Open:
    """Follow `items` in order; reject a repeat that overlaps an earlier unseparated one.

    Two repeats that can take the same characters with nothing mandatory and different
    between them (`a*a*`, `\\d+\\d+`, `.*x.*y`) make backtracking polynomial or worse.
    """
    last = max((i for i, (op, _) in enumerate(items) if str(op) != "AT"), default=-1)
    for i, (op, av) in enumerate(items):
        name = str(op)
        at_end = tail and i >= last
        if name in _FORBIDDEN:
            raise ValueError(f"{_FORBIDDEN[name]} are not supported (RE2 subset)")
        if name in _CHAR:
            chars = _chars(name, av, fold)
            run = [held for held in run if held & chars]
        elif name in _REPEAT:
            run = _repeat(av, run, at_end=at_end, fold=fold)
        elif name == "SUBPATTERN":
            run = _walk(av[3], run, tail=at_end, fold=fold or bool(av[1] & re.IGNORECASE))
        elif name == "BRANCH":
            ways = [_walk(branch, list(run), tail=at_end, fold=fold) for branch in av[1]]
            run = list({held for way in ways for held in way})
        elif name != "AT":
            raise ValueError(f"{name.lower()} is not supported (RE2 subset)")
    return run


def _repeat(av: Any, run: Open, *, at_end: bool, fold: bool) -> Open:
    low, high, body = av
    if high <= 1:  # `x?` or `x{1}`: a plain or optional part, not a loop
        after = _walk(body, list(run), tail=at_end, fold=fold)
        return after if low else list({*run, *after})
    steps = _fixed(body, fold)
    chars = frozenset().union(*steps)
    # A final loop over every byte always matches the rest: no backtracking into it.
    final = at_end and chars == _ALL and high == _parser.MAXREPEAT
    if not final and any(held & chars for held in run):
        raise ValueError(
            "two repeats can take the same text with nothing between them "
            "(as in a*a* or .*x.*y); only a final .* may overlap"
        )
    return ([] if low else run) + [chars]


def _fixed(items: list[Any], fold: bool) -> list[frozenset[int]]:
    """The characters of each step of a repeated part, which must be a plain sequence."""
    steps: list[frozenset[int]] = []
    for op, av in items:
        name = str(op)
        if name in _CHAR:
            steps.append(_chars(name, av, fold))
        elif name == "SUBPATTERN":
            steps.extend(_fixed(av[3], fold or bool(av[1] & re.IGNORECASE)))
        else:
            raise ValueError(
                "a repeated group may not hold repeats or alternatives: (a+)+, (ab|c)*"
            )
    return steps


def _chars(name: str, av: Any, fold: bool) -> frozenset[int]:
    if name == "LITERAL":
        chars = frozenset({av})
    elif name == "NOT_LITERAL":
        chars = _ALL - {av}
    elif name == "ANY":
        chars = _ALL
    else:
        chars = _members(av)
    if fold:
        chars = chars | {ord(chr(c).swapcase()) for c in chars if chr(c).isascii()}
    return chars


def _members(items: list[Any]) -> frozenset[int]:
    chars: set[int] = set()
    negate = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            chars.add(av)
        elif name == "RANGE":
            chars.update(range(av[0], av[1] + 1))
        elif name == "CATEGORY":
            chars.update(_CLASSES[str(av)])
        else:
            raise ValueError(f"{name.lower()} in a character class is not supported")
    return _ALL - chars if negate else frozenset(chars)


def _paths(items: list[Any]) -> int:
    """How many ways a match can go through alternations and optional parts."""
    total = 1
    for op, av in items:
        name = str(op)
        if name == "BRANCH":
            total *= sum(_paths(branch) for branch in av[1])
        elif name == "SUBPATTERN":
            total *= _paths(av[3])
        elif name in _REPEAT and av[1] <= 1:
            total *= _paths(av[2]) + (av[0] == 0)
        total = min(total, MAX_PATHS + 1)  # stop huge products early
    return total
