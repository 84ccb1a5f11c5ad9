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


def parsed(data: bytes, *, requests: bool) -> tuple[list[Message], str]:
    """The complete messages httptools finds in `data`, and why it stopped before the end:
    the error, or "truncated" when the data ends inside a message."""
    collector = _Collector(request=requests)
    try:
        collector.feed(data)
    except httptools.HttpParserError as exc:
        return list(collector.done), f"{type(exc).__name__}: {exc}"
    return list(collector.done), "truncated" if collector.current is not None else ""


def check(data: bytes, run: Run) -> None:
    assert not run.errors, run.errors
    assert run.ended, "the engine neither answered nor closed: a hang"
    for side in run.upstreams:
        assert not side.error, (
            f"the upstream could not parse {bytes(side.received)!r}: {side.error}"
        )
    answers, broken = parsed(bytes(run.to_client), requests=False)
    assert broken in ("", "truncated"), (
        f"the client could not parse {bytes(run.to_client)!r}: {broken}"
    )
    answers = [a for a in answers if a.status != 100]
    meant, malformed = parsed(data, requests=True)
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
