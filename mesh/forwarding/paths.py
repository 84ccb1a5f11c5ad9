"""The request path as routes match it and upstreams receive it: normalised (RFC 3986 §6.2.2)."""

from __future__ import annotations

import re

from mesh.errors import BadRequest
from mesh.forwarding.routing import is_absolute, split_absolute

# RFC 3986 §2.3: percent-encoded, these mean the same as the characters themselves.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# Encoded, '/' and '\' are data to routes but a path separator to many upstreams
# (frameworks that decode the path first): the two would disagree about the segments.
_SEPARATORS = {0x2F: "'/'", 0x5C: "'\\'"}


def normalize(target: bytes) -> bytes:
    """`target` with its path normalised; the query is left as it is.

    In RFC 3986's order: percent-encoded unreserved characters are decoded (other
    encodings keep upper-case hex), so `%2e%2e` is a `..` segment like any other; runs of
    slashes become one; dot segments are removed. Refused with BadRequest: a path that
    climbs above the root, an encoded slash or backslash, an invalid percent-encoding,
    and a dot segment with a parameter (`..;`, which some servers read as `..`).
    """
    known = _MEMO.get(target)
    if known is not None:
        return known
    normal = _normalize(target) if _SUSPECT(target) else target
    if len(target) <= _MEMO_LONGEST:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[target] = normal
    return normal


# Targets repeat: remembering recent results costs a dict lookup per request instead of
# a scan (a few thousand instructions). Refusals are not remembered; the memo is bounded
# in entries and their length, and forgets everything when full.
_MEMO: dict[bytes, bytes] = {}
_MEMO_SIZE = 4096
_MEMO_LONGEST = 512
# What normalisation may change; one search costs less than three `in` tests.
_SUSPECT = re.compile(rb"%|//|/\.").search


def _normalize(target: bytes) -> bytes:
    if target[:1] != b"/":
        if not is_absolute(target):
            return target  # `*`
        authority, origin = split_absolute(target)
        return target[:7] + authority + _normalize(origin)
    path, mark, query = target.partition(b"?")
    if b"%" in path:
        path = _decode_unreserved(path)
    while b"//" in path:
        path = path.replace(b"//", b"/")
    if b"/." in path:
        path = _remove_dot_segments(path)
    return path + mark + query


def _decode_unreserved(path: bytes) -> bytes:
    pieces = path.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        digits = piece[:2]
        if len(digits) < 2 or not _HEX.issuperset(digits):
            raise BadRequest("invalid percent-encoding in the path")
        byte = int(digits, 16)
        if byte in _UNRESERVED:
            out.append(bytes((byte,)))
        elif byte in _SEPARATORS:
            raise BadRequest(f"encoded {_SEPARATORS[byte]} in the path")
        else:
            out.append(b"%" + digits.upper())
        out.append(piece[2:])
    return b"".join(out)


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 for a path starting with '/', with the refusals above."""
    kept: list[bytes] = []
    segments = path.split(b"/")[1:]
    for segment in segments:
        if segment == b".":
            continue
        if segment == b"..":
            if not kept:
                raise BadRequest("the path climbs above the root")
            kept.pop()
        elif segment[:2] == b".;" or segment[:3] == b"..;":
            raise BadRequest("a dot segment with a parameter in the path")
        else:
            kept.append(segment)
    if segments[-1] in (b".", b".."):
        kept.append(b"")  # `/a/b/..` is `/a/`: the directory, not the file
    return b"/" + b"/".join(kept)
