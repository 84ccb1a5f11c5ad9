"""Policy regexes (Python's `re` dialect) as PCRE2 patterns that match exactly the same text."""

from __future__ import annotations

import re

# `{,n}` and `{,}` are quantifiers to Python, literal text to PCRE2 before 10.43.
_OPEN_LOW = re.compile(r"\{,(\d*)\}")
# Inline flags Python knows; PCRE2 reads i, m and s alike. Python's verbose mode differs
# from PCRE2's extended mode in details (whitespace in quantifiers), and a, L, u do not
# exist there: those are refused rather than guessed.
_SAME_FLAGS = frozenset("ims-")
_FLAGGED = re.compile(r"\(\?([a-zA-Z-]+)[:)]")


def pcre(pattern: str) -> str:
    """`pattern` (checked by mesh.policy.regex) as a PCRE2 pattern for a whole-value match.

    Anchored at both ends (Python's `fullmatch`), `.` taking every byte (the engine's
    DOTALL). ValueError names what has no faithful translation.
    """
    out: list[str] = []
    i, end = 0, len(pattern)
    in_class = False
    while i < end:
        char = pattern[i]
        if char == "\\":
            out.append(_escape(pattern[i + 1], in_class))
            i += 2
            continue
        if in_class:
            if char == "[" and pattern[i + 1 : i + 2] in (":", ".", "="):
                raise ValueError(
                    f"'[{pattern[i + 1]}' inside a character class is a POSIX class to PCRE2"
                )
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            out.append(char)
            i += 1
            if pattern[i : i + 1] == "^":
                out.append("^")
                i += 1
            if pattern[i : i + 1] == "]":  # first in a class, `]` is itself
                out.append("\\]")
                i += 1
            continue
        elif char == "{" and (low := _OPEN_LOW.match(pattern, i)):
            out.append("{0," + low.group(1) + "}")
            i = low.end()
            continue
        elif char == "(" and (flagged := _FLAGGED.match(pattern, i)):
            unknown = set(flagged.group(1)) - _SAME_FLAGS
            if unknown:
                raise ValueError(f"inline flag {''.join(sorted(unknown))} differs in PCRE2")
        out.append("\\x27" if char == "'" else char)
        i += 1
    return "(?s)\\A(?:" + "".join(out) + ")\\z"


def _escape(char: str, in_class: bool) -> str:
    if char == "Z" and not in_class:
        return "\\z"  # Python's \Z is the very end; PCRE2's also takes a final newline
    if char == "v":
        return "\\x0b"  # Python's \v is VT; PCRE2's is every vertical space
    if char == "'":
        return "\\x27"  # the config quotes patterns in single quotes
    return "\\" + char
