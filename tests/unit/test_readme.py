"""README.md stays true: every setting and every command is documented there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import cli, config

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(config.Settings.model_fields))
def test_every_setting_is_in_the_readme(name: str) -> None:
    assert f"`MESH_{name.upper()}`" in README


def test_every_command_is_in_the_readme() -> None:
    commands = cli.parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"`mesh {command}" in README, command


def test_the_two_setup_commands_come_first() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block
    assert "make test" in first_block
