"""Hypothesis strategies for hostile HTTP/1.1 request streams, built from grammar pieces.

Mostly-valid requests reach deep into the engine; the pieces are the ones request
smuggling and parser-differential corpora use: CL/TE conflicts, obs-fold, bare LF/CR,
NUL, huge, negative and odd lengths, chunk extensions, trailers, pipelining, absolute
form, invalid methods and versions. A few byte-level mutations then break what is left.
"""

from __future__ import annotations

from itertools import pairwise
from random import Random

from hypothesis import strategies as st

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"]
ODD_METHODS = [b"CONNECT", b"get", b"G ET", b"", b"GET\x00", b"PRI", b"\xffGET", b"M-SEARCH"]
TARGETS = [
    b"/",
    b"/a?b=c",
    b"/svc/x",
    b"/a/../b",
    b"//x//y",
    b"/%2e%2e/admin",
    b"http://svc/abs",
    b"http://svc:80/abs?q",
    b"http://other.example/x",
    b"*",
]
ODD_TARGETS = [b"", b"/a b", b"/\x00", b"/#frag", b"/\xff\xfe", b"svc", b"HTTP://svc/", b"/\x7f"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0"]
ODD_VERSIONS = [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"http/1.1", b"HTTP/11", b"", b"HTTP/1.1 "]
EOLS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n", b"\n\r"]
NAMES = [
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Upgrade",
    b"Expect",
    b"Trailer",
    b"TE",
    b"Keep-Alive",
    b"X-A",
    b"x-forwarded-for",
    b"x-mesh-flags",
    b"Max-Forwards",
]
ODD_NAMES = [b"Transfer-Encoding ", b" Host", b"Content-Length\t", b"", b"X\x00Y", b"X:Y", b"\xff"]
SEPARATORS = [b": "] * 8 + [b":", b":\t", b" : ", b":  ", b":\x0b", b"\x00: "]
VALUES = [
    b"svc",
    b"chunked",
    b"CHUNKED",
    b"chunked, identity",
    b"gzip, chunked",
    b"identity",
    b"0",
    b"3",
    b"010",
    b"+3",
    b"-1",
    b"0x3",
    b"3, 3",
    b"99999999999999999999",
    b"18446744073709551616",
    b"keep-alive",
    b"close",
    b"upgrade",
    b"websocket",
    b"h2c",
    b"100-continue",
    b"content-length",
    b"",
    b"a\r\n folded",
    b"a\x00b",
    b"a\x7fb",
    b"\xff",
    b"other.example",
    b"we b",
    b"svc:80",
    b"v" * 600,  # two of them pass a 1 KiB head limit
]

# Headers that change nothing about framing, for the clean half of the requests.
CLEAN_HEADERS = [
    b"X-A: 1",
    b"Accept: */*",
    b"Connection: keep-alive",
    b"x-request-id: fuzz",
    b"x-forwarded-for: 10.0.0.1",
    b"Cookie: " + b"c" * 700,  # two of them pass a 1 KiB head limit
    b"Trailer: X-T",
    b"TE: trailers",
]

# One request's body framing: how its headers describe it and what its bytes are.
FRAMINGS = ["none", "none", "cl", "cl", "cl-wrong", "te", "te", "te-bad", "cl-te", "te-cl"]
MUTATION_BYTES = [b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"0", b"9", b"\xff", b"a"]


def chunked_body(rng: Random, content: bytes) -> bytes:
    """`content` as chunks, with extensions, trailers and the occasional lie in a size."""
    out = bytearray()
    rest = content
    while rest:
        size = rng.randint(1, len(rest))
        piece, rest = rest[:size], rest[size:]
        shown = b"%x" % len(piece)
        shown = rng.choice([shown] * 6 + [shown.upper(), b"0" + shown, shown + b" "])
        extension = rng.choice([b""] * 4 + [b";a=b", b"; a", b';q="x y"', b";" + b"e" * 80])
        out += shown + extension + b"\r\n" + piece + b"\r\n"
    out += b"0" + rng.choice([b"", b";end"]) + b"\r\n"
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        out += rng.choice(NAMES) + b": " + rng.choice(VALUES) + b"\r\n"
    out += b"\r\n"
    return bytes(out)


def request(rng: Random) -> bytes:
    """One request: half of them clean, the others with hostile pieces here and there."""
    hostile = rng.random() < 0.5
    odd = hostile and rng.random() < 0.2
    method = rng.choice(METHODS + ODD_METHODS if odd else METHODS)
    target = rng.choice(TARGETS + ODD_TARGETS if odd else TARGETS)
    version = rng.choice(VERSIONS + ODD_VERSIONS if odd else VERSIONS)
    eol = rng.choice(EOLS) if hostile else b"\r\n"
    line = method + b" " + target + (b" " + version if version else b"")
    headers: list[bytes] = []
    if rng.random() < 0.95:
        headers.append(b"Host: " + rng.choice([b"svc"] * 6 + [b"other.example", b"svc:80", b""]))
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        if hostile:
            name, separator = rng.choice(NAMES + ODD_NAMES), rng.choice(SEPARATORS)
            headers.append(name + separator + rng.choice(VALUES))
        else:
            headers.append(rng.choice(CLEAN_HEADERS))
    content = rng.randbytes(rng.choice([0, 0, 1, 3, 10, 40]))
    framing = rng.choice(FRAMINGS if hostile else ["none", "cl", "te"])
    body = b""
    if framing == "cl":
        headers.append(b"Content-Length: %d" % len(content))
        body = content
    elif framing == "cl-wrong":
        headers.append(b"Content-Length: %d" % rng.randint(0, 60))
        body = content
    elif framing != "none":
        if framing == "te-cl":
            headers.append(b"Content-Length: %d" % len(content))
        headers.append(b"Transfer-Encoding: chunked")
        if framing == "cl-te":
            headers.append(b"Content-Length: %d" % len(content))
        body = chunked_body(rng, content)
        if framing == "te-bad":
            body = body.replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n"]), 1)
    rng.shuffle(headers)
    return line + eol + b"".join(h + eol for h in headers) + eol + body


def mutate(rng: Random, data: bytes) -> bytes:
    """`data` with a few bytes replaced, inserted or deleted (none, most of the time)."""
    out = bytearray(data)
    for _ in range(rng.choice([0, 0, 0, 1, 2, 3])):
        at = rng.randint(0, len(out))
        byte = rng.choice(MUTATION_BYTES)
        operation = rng.choice(["insert", "replace", "delete"])
        if operation == "insert":
            out[at:at] = byte
        elif operation == "replace":
            out[at : at + 1] = byte
        else:
            del out[at : at + 1]
    return bytes(out)


def stream(rng: Random) -> bytes:
    """One connection's bytes: one to four pipelined requests, perhaps mutated."""
    return mutate(rng, b"".join(request(rng) for _ in range(rng.randint(1, 4))))


def pieces(rng: Random, data: bytes) -> list[bytes]:
    """`data` cut where reads could end: whole, or at a few random places."""
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.choice([0, 0, 1, 2, 4])))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


# Hypothesis draws one seed per example and the grammar runs on it in plain Python: a
# strategy drawing every piece would spend ~30 ms per stream in Hypothesis' own bookkeeping
# (measured on this 2-core machine), a seeded Random well under 0.1 ms. Failures then are
# not shrunk; they are printed whole, and a stream is at most four short requests.
connections = st.builds(
    lambda rng: (data := stream(rng), pieces(rng, data)), st.randoms(use_true_random=True)
)
