"""`mesh tap`'s flags and output, without a mesh: bad input and no NATS each get one line."""

from __future__ import annotations

import pytest
from factories import request_record
from mesh_cli import mesh_command

from mesh import cli, subjects
from mesh.bus import Delivery
from mesh.messages import TapFilter, TapRecords, encode
from mesh.node.ports import free_port
from mesh.observe import tap


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--service", "a.b"], "--service 'a.b': give a service name: letters, digits"),
        (["--route", "x y"], "--route 'x y': give a route name: letters, digits"),
        (["--path", "hello"], "--path 'hello': give a path starting with '/'"),
        (["--path", "/a b"], "--path '/a b': give a path starting with '/'"),
        (["--method", "G ET"], "--method 'G ET': give a method in letters, e.g. GET"),
        (["--max", "0"], "--max: at least 1"),
        (["--duration", "0"], "--duration: more than 0, e.g. 30s"),
    ],
)
def test_a_bad_filter_is_refused_with_one_line_naming_it(flags: list[str], said: str) -> None:
    ran = mesh_command("tap", "--nats-url", "nats://127.0.0.1:1", *flags)
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1
    assert ran.stderr.startswith("mesh tap: ")
    assert said in ran.stderr
    assert "`" not in ran.stderr  # people's words, not msgspec's


@pytest.mark.parametrize("command", [["tap"], ["events", "tail"]])
@pytest.mark.parametrize("flag", [["--preset", "lan"], ["--log-level", "debug"]])
def test_flags_a_watching_command_would_ignore_are_not_taken(
    command: list[str], flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither times failures nor configures logging: it takes --nats-url alone."""
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, *flag])
    assert exited.value.code == 2
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err


def test_each_filter_the_command_takes_reaches_the_announcement() -> None:
    wanted = ["--service", "orders", "--route", "api", "--path", "/v1/", "--status", "5xx"]
    args = cli.parser("tap").parse_args(["tap", *wanted, "--method", "post", "--sample", "0.5"])
    opened = tap.announcement(args, "t1")
    assert opened.filter == TapFilter(
        service="orders", route="api", path_prefix="/v1/", status="5xx", method="POST"
    )
    assert (opened.id, opened.sample, opened.ttl, opened.closing) == ("t1", 0.5, tap.TTL, False)


def test_nats_unreachable_is_one_line_and_a_non_zero_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap, "CONNECT_WAIT", 0.3)
    ran = mesh_command("tap", "--nats-url", f"nats://127.0.0.1:{free_port()}", "--duration", "1s")
    assert ran.returncode == 2
    assert ran.stdout == ""
    (line,) = ran.stderr.splitlines()
    assert line.startswith("mesh tap: could not reach NATS at nats://127.0.0.1:")


def test_a_record_reads_as_one_line() -> None:
    record = request_record()
    assert tap.line(record) == (
        "09:41:02.123 gateway-3fa2c1-w0        GET hello/world 200 - 2.4ms hello-1"
        " attempts=1 id=5f0c-1a"
    )


def test_an_absolute_url_reads_as_it_came() -> None:
    record = request_record(authority="hello", path="http://hello/greet")
    assert " GET http://hello/greet 200 " in tap.line(record)


async def test_a_node_that_refused_the_tap_is_said_once_and_forgotten_once_it_sends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = tap.Tap(as_json=True, most=None)
    subject = subjects.tapped("t1", "edge")
    refusal = encode(TapRecords(tap="t1", node="gw-1", refused=True))
    for _ in range(3):  # at each renewal, while its taps stay full
        await shown.receive(Delivery(subject, refusal, "", None))
    (said,) = capsys.readouterr().err.splitlines()
    assert said.startswith("# gw-1: refused this tap, it keeps as many open as it may")
    assert "MESH_TAP_MAX_OPEN" in said
    assert shown.refused_by == {"gw-1"}
    taken = encode(TapRecords(tap="t1", node="gw-1", records=[request_record()]))
    await shown.receive(Delivery(subject, taken, "", None))  # a slot came free
    assert (shown.refused_by, shown.shown) == (set(), 1)
