"""mesh.haproxy.log_lines: HAProxy's log lines as requests, flags, outcomes and servers down."""

from __future__ import annotations

import pytest

from mesh.haproxy.log_lines import NO_SERVER, Request, ServerDown, parse
from mesh.resilience import outcome
from mesh.resilience.outcome import Outcome


def line(
    server: str = "hello-a",
    status: int = 200,
    termination: str = "----",
    retries: str = "0",
    response: int = 3,
    backend: str = "hello",
    route: str = "path",
    flags: str = "-",
    request_id: str = "rid1",
    answer: str = "-",
    answered: str = "-",
) -> str:
    fields = [backend, server, str(status), termination, retries, "1", str(response), "4"]
    numbers = ["4242", answer, answered]
    return "\t".join([*fields, *numbers, route, flags, "GET", "/x", request_id])


def request(text: str) -> Request:
    parsed = parse(text)
    assert isinstance(parsed, Request)
    return parsed


def test_a_request_line_has_every_field() -> None:
    assert request(line()) == Request(
        backend="hello",
        server="hello-a",
        status=200,
        termination="----",
        retries=0,
        redispatched=False,
        connect=0.001,
        response=0.003,
        total=0.004,
        worker=4242,
        answer=None,
        answered=None,
        route="path",
        replied_flags="",
        method="GET",
        path="/x",
        request_id="rid1",
    )


def test_a_sampling_haproxys_answer_numbers_are_read() -> None:
    answered = request(line(answer="17", answered="17"))
    assert (answered.answer, answered.answered) == (17, 17)
    timed_out = request(line(status=504, termination="sH--", response=-1, answered="16"))
    assert (timed_out.answer, timed_out.answered) == (None, 16)


def test_a_client_cannot_forge_fields_through_its_request_id() -> None:
    """The id is the client's x-request-id, tabs and all: it comes last, and whatever it
    holds stays in it."""
    forged = "x\thello\thello-a\t200\tSC--\t0\t0\t0\t0\t1\t9\t9\tapi\t-\tGET\t/"
    parsed = request(line(request_id=forged))
    assert (parsed.server, parsed.termination, parsed.route) == ("hello-a", "----", "path")
    assert parsed.request_id == forged
    assert parsed.outcome() == outcome.response(200)


def test_the_service_of_a_subset_backend_and_of_no_route() -> None:
    assert request(line(backend="hello.1f2e3d4c")).service == "hello"
    assert request(line(server=NO_SERVER, status=404, backend="mesh", route="-")).service == ""
    assert request(line(server=NO_SERVER, status=413, backend="mesh", route="-")).service == ""
    assert request(line(route="-")).route == ""


@pytest.mark.parametrize(
    ("server", "status", "termination", "retries", "flags", "result"),
    [
        ("hello-a", 200, "----", "0", "-", outcome.response(200)),
        ("hello-a", 503, "----", "0", "-", outcome.response(503)),  # the upstream's own
        (NO_SERVER, 404, "LR--", "0", "NR", None),
        (NO_SERVER, 503, "LR--", "0", "UH", None),
        (NO_SERVER, 503, "LR--", "0", "UO", None),  # the reply's own flag tells them apart
        ("hello-a", 503, "SC--", "0", "UF", outcome.REFUSED),
        ("hello-a", 503, "SC--", "+2", "UF", outcome.REFUSED),  # as the client was told
        ("hello-a", 503, "sC--", "0", "UF", outcome.CONNECT_FAILURE),
        ("hello-a", 504, "sH--", "0", "UT", outcome.TIMEOUT),
        ("hello-a", 502, "SH--", "0", "UC", outcome.RESET),
        ("hello-a", 502, "PH--", "0", "UPE", outcome.response(502)),
        ("hello-a", -1, "CD--", "0", "DC", outcome.response(200)),
        ("hello-a", 200, "CD--", "0", "DC", outcome.response(200)),
    ],
)
def test_flags_and_outcomes_as_the_python_engine_names_them(
    server: str, status: int, termination: str, retries: str, flags: str, result: Outcome | None
) -> None:
    replied = flags if server == NO_SERVER else "-"  # HAProxy's own replies carry theirs
    text = line(server, status, termination, retries, flags=replied)
    if status == -1:  # the client left before a response: none came back either
        text = line(server=server, status=-1, termination=termination, response=-1)
        result = None
    parsed = request(text)
    assert parsed.flags == flags
    assert parsed.outcome() == result


def test_a_server_haproxy_took_out_on_its_own() -> None:
    text = (
        'Server hello/hello-a is DOWN, reason: Health analyze, info: "Detected 1 consecutive'
        ' errors, last one was: L4 unsuccessful connection". 1 active and 0 backup servers'
        " left. 0 sessions active, 0 requeued, 0 remaining in queue."
    )
    assert parse(text) == ServerDown(
        "hello",
        "hello-a",
        "Detected 1 consecutive errors, last one was: L4 unsuccessful connection",
    )


@pytest.mark.parametrize(
    "text",
    [
        "Server hello/hello-a is DOWN for maintenance.",  # our own `state maint`
        "Server hello/hello-a is UP/READY (leaving forced maintenance).",
        "Proxy fe started.",
        "",
        line(status=999).replace("999", "x"),  # not a number
        line(answer="x"),  # an answer number that is not one
        "\t".join(["a"] * 5),  # a few tabs, not a request line
    ],
)
def test_lines_that_are_not_ours_to_act_on(text: str) -> None:
    assert parse(text) is None
