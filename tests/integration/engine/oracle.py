"""What one fuzzed client connection must satisfy: no crash, no hang, 4xx or exact forwarding.

The reference is a second httptools parse of the client's bytes, standing for what the
client meant: the upstream must parse exactly those requests the engine answered with
the upstream's answer, with the same method and body, and nothing else; every other
answer is a 4xx made by the proxy; malformed input is refused or the connection ends.
"""

from __future__ import annotations

import httptools
from fake_net import UPSTREAM_MARK, Run
from wire import Message, _Collector


def parsed(data: bytes) -> tuple[list[Message], list[bytes], str]:
    """The complete requests httptools finds in `data`; the methods of those and of one it
    stopped inside; why it stopped before the end: the error, or "truncated"."""
    collector = _Collector(request=True)
    error = ""
    try:
        collector.feed(data)
    except httptools.HttpParserError as exc:
        error = f"{type(exc).__name__}: {exc}"
    partial = collector.current
    methods = [m.method for m in collector.done]
    if partial is not None and partial.method:
        methods.append(partial.method)
    return list(collector.done), methods, error or ("truncated" if partial is not None else "")


def responses(data: bytes, methods: list[bytes]) -> tuple[list[Message], str]:
    """The final responses in `data`, the k-th answering a `methods[k]` request, and why
    they stop before the end.

    Framed here rather than by one httptools parser, which cannot know that an answer to
    HEAD has no body: every answer in these runs has a Content-Length (the fake upstream's
    and the proxy's own), and nothing else is expected. The refusal of a HEAD whose body
    turned out malformed may come with its JSON body or without: the connection ends
    there, so either is harmless.
    """
    found: list[Message] = []
    while data:
        head, end, rest = data.partition(b"\r\n\r\n")
        if not end:
            return found, "truncated"
        collector = _Collector(request=False)
        try:
            collector.feed(head + end)
        except httptools.HttpParserError as exc:
            return found, f"{type(exc).__name__}: {exc}"
        message = collector.done[0] if collector.done else collector.current
        if message is None:
            return found, "no response head"
        if message.status == 100:
            data = rest
            continue
        length = message.header("content-length")
        head_only = len(found) < len(methods) and methods[len(found)] == b"HEAD"
        if length is None or not length.isdigit():
            return found, f"an answer without a usable Content-Length: {head!r}"
        size = 0 if head_only and (not rest or rest.startswith(b"HTTP/")) else int(length)
        if len(rest) < size:
            return found, "truncated"
        message.body = bytearray(rest[:size])
        found.append(message)
        data = rest[size:]
    return found, ""


def check(data: bytes, run: Run) -> None:
    assert not run.errors, run.errors
    assert run.ended, "the engine neither answered nor closed: a hang"
    for side in run.upstreams:
        assert not side.error, (
            f"the upstream could not parse {bytes(side.received)!r}: {side.error}"
        )
    meant, methods, malformed = parsed(data)
    answers, broken = responses(bytes(run.to_client), methods)
    assert broken in ("", "truncated"), (
        f"the client could not parse {bytes(run.to_client)!r}: {broken}"
    )
    forwarded = iter(run.forwarded)
    for index, answer in enumerate(answers):
        if answer.header(UPSTREAM_MARK.decode()) is not None:
            assert index < len(meant), "the upstream answered a request the client never made"
            seen, wanted = next(forwarded), meant[index]
            got, meant_here = (seen.method, bytes(seen.body)), (wanted.method, bytes(wanted.body))
            assert got == meant_here, f"request {index} reached the upstream as {got}"
        else:
            assert 400 <= answer.status < 500 or final_here(meant, index), answer
        if answer.header("connection") == "close":
            assert index == len(answers) - 1, "answers after a connection: close"
    if malformed != "truncated":
        # A client that half-closes inside a request is gone: answers still due are dropped.
        assert next(forwarded, None) is None, "the upstream got a request whose answer was lost"
    if malformed not in ("", "truncated") and (
        not answers or answers[-1].header("connection") != "close"
    ):
        raise AssertionError(f"malformed input ({malformed}) was neither refused nor ended")


def final_here(meant: list[Message], index: int) -> bool:
    """A TRACE or OPTIONS with `Max-Forwards: 0` is the proxy's to answer (RFC 9110 §7.6.2)."""
    if index >= len(meant):
        return False
    request = meant[index]
    return request.method in (b"TRACE", b"OPTIONS") and request.header("max-forwards") == "0"
