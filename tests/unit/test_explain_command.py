"""`mesh explain`'s arguments: the URL and headers as a question, --node as a subject."""

from __future__ import annotations

import pytest

from mesh import cli, subjects
from mesh.errors import ConfigError
from mesh.forwarding.explanation import Question
from mesh.observe.explain import question, subject


@pytest.mark.parametrize(
    ("url", "headers", "expected"),
    [
        ("http://shop:8080/api/x?q=1", [], Question("GET", "/api/x?q=1", "shop:8080")),
        ("HTTPS://shop", [], Question("GET", "/", "shop")),
        ("http://shop?page=2", [], Question("GET", "/?page=2", "shop")),
        (
            "/api",
            ["Host: shop", "x-canary: 1"],
            Question("GET", "/api", "shop", (("x-canary", "1"),)),
        ),
        ("http://a/x", ["host: b"], Question("GET", "/x", "b")),  # -H Host wins, as curl's
        ("/x", [], Question("GET", "/x")),
    ],
)
def test_a_url_and_headers_become_the_question(
    url: str, headers: list[str], expected: Question
) -> None:
    assert question("GET", url, headers) == expected


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", "shop/x", []),  # neither a URL nor a path
        ("GET", "/x", ["no colon"]),
        ("GET", "/x", [" x: 1"]),
        ("GET /", "/x", []),  # not a method token
        ("GET", "/caf\u00e9\u2603", []),  # not latin-1: no HTTP head carries it
        ("GET", "/x", ["x-a: 1\r\nx-b: 2"]),  # CR/LF would make it two headers
        ("GET", "/x", ["x-a: 1\nx"]),
        ("GET", "/x\r\nHost: other", []),
        ("GET", "http://a\rb/x", []),
    ],
)
def test_what_is_no_http_request_is_refused(method: str, url: str, headers: list[str]) -> None:
    with pytest.raises(ConfigError):
        question(method, url, headers)


def test_node_names_a_service_or_one_instance() -> None:
    assert subject("") == subjects.EXPLAIN
    assert subject("edge") == "mesh.v1.explain.edge"
    assert subject("hello/hello-1") == "mesh.v1.explain.hello.hello-1"
    for bad in ("a.b", "hello/x/y", "/x"):
        with pytest.raises(ConfigError):
            subject(bad)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--timeout", "0"], "mesh explain: --timeout: more than 0 s\n"),
        (
            ["-H", "x-a: 1\r\nx-b: 2"],
            "mesh explain: -H 'x-a: 1\\r\\nx-b: 2': CR or LF in a header, which would end it\n",
        ),
    ],
)
def test_bad_flags_are_one_line_before_nats_is_asked(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreachable NATS would say so instead: the flag is refused first.
    assert cli.main(["explain", "GET", "/x", "--nats-url", "nats://127.0.0.1:1", *argv]) == 2
    assert capsys.readouterr().err == said


@pytest.mark.parametrize("flag", [["--preset", "wan"], ["--log-level", "debug"]])
def test_flags_it_would_ignore_are_not_taken(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["explain", "GET", "/x", *flag])
    assert exited.value.code == 2
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err
