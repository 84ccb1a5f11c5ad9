"""mesh.durations: one grammar for every duration flag and policy document."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator

import pytest

from mesh import cli, durations
from mesh.policy.fields import parse_duration

GOOD: list[tuple[object, float]] = [
    ("250ms", 0.25),
    ("1s", 1.0),
    ("1.5s", 1.5),
    ("2m", 120.0),
    ("1h", 3600.0),
    ("1d", 86400.0),
    ("1h30m", 5400.0),
    ("1m0.5s", 60.5),
    ("2d12h", 216000.0),
    ("90", 90.0),  # a plain number is seconds, in text too
    ("0.25", 0.25),
    ("0", 0.0),
    ("0s", 0.0),
    (90, 90.0),
    (0.03, 0.03),
    (0, 0.0),
]

BAD: list[object] = [
    "",
    "s",
    "1 s",
    " 1s",
    "1s ",
    "1S",
    "1sec",
    "-1s",
    "-1",
    "+1",
    "1e3",
    "1e3s",
    ".5s",
    "1.s",
    "1m30",  # every part of a compound names its unit
    "inf",
    "nan",
    "1_000",
    "1234567890s",  # over nine digits a part
    -1,
    10**10,
    pytest.param(10**5000, id="int-of-5000-digits"),
    math.nan,
    math.inf,
]


@pytest.mark.parametrize(("written", "seconds"), GOOD)
def test_the_grammar_reads(written: object, seconds: float) -> None:
    assert durations.parse(written) == pytest.approx(seconds)


@pytest.mark.parametrize("written", BAD)
def test_the_grammar_refuses_saying_what_is_accepted(written: object) -> None:
    with pytest.raises(ValueError, match="a duration such as 250ms"):
        durations.parse(written)


@pytest.mark.parametrize("written", [True, None, [], {"s": 1}, b"1s"])
def test_non_durations_are_type_errors(written: object) -> None:
    with pytest.raises(TypeError, match="a duration such as 250ms"):
        durations.parse(written)


@pytest.mark.parametrize(("written", "seconds"), [(w, s) for w, s in GOOD if 0 < s <= 86400])
def test_documents_read_the_same_grammar(written: object, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


@pytest.mark.parametrize("written", ["0", "0s", 0, "24h1ms", "25h", "2d", 86401])
def test_documents_take_above_0_up_to_a_day(written: object) -> None:
    with pytest.raises(ValueError, match="above 0 and at most 24h"):
        parse_duration(written)


def _flags(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{path} {name}")
        else:
            yield path, action


FLAGS = list(_flags(cli.parser(), "mesh"))
DURATION_FLAGS = [
    pytest.param(path, action, id=f"{path} {action.option_strings[-1]}")
    for path, action in FLAGS
    if action.type is durations.argument
]


def test_the_flags_that_take_durations() -> None:
    assert {
        "mesh members --wait",
        "mesh events --since",
        "mesh events --for",
        "mesh up --ready-timeout",
        "mesh policy apply --timeout",
        "mesh policy rollback --timeout",
        "mesh policy delete --timeout",
        "mesh policy sync --debounce",
    } <= {f"{p} {a.option_strings[-1]}" for p, a in FLAGS if a.type is durations.argument}
    # Seconds as a bare float would refuse `2s`: every duration flag uses the grammar.
    assert not [f"{p} {a.option_strings}" for p, a in FLAGS if a.type is float]


@pytest.mark.parametrize(("path", "action"), DURATION_FLAGS)
@pytest.mark.parametrize(("written", "seconds"), [("2s", 2.0), ("1m30s", 90.0), ("1.5", 1.5)])
def test_every_duration_flag_reads_the_grammar(
    path: str, action: argparse.Action, written: str, seconds: float
) -> None:
    assert action.type is not None
    assert action.type(written) == pytest.approx(seconds)  # type: ignore[operator]


@pytest.mark.parametrize(("path", "action"), DURATION_FLAGS)
def test_a_bad_duration_flag_is_a_usage_error_naming_the_flag(
    path: str, action: argparse.Action, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*path.split()[1:], action.option_strings[-1], "2x"]
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert action.option_strings[-1] in error
    assert "'2x' is not a duration such as 250ms" in error
