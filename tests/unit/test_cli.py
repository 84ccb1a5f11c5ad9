"""The `mesh` command registry: every command in the help, only the chosen one imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mesh import cli

COMMANDS = ["up", "members", "events", "config", "demo-service", "agent", "gateway", "policy"]

# Runs `mesh ARGV` (which exits: --help) in a fresh interpreter, then prints the modules
# it imported that `mesh` does not need for every command.
PROBE = """
import json, sys
from mesh import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("agents", "gateway", "policies", "watchfiles", "nats", "pydantic", "mesh.playground.up",
         "mesh.playground.demo", "mesh.commands", "mesh.config", "mesh.engine")
print(json.dumps(sorted({m for m in sys.modules if m.split(".")[0] in heavy or m in heavy})))
"""


def imported(*argv: str) -> set[str]:
    ran = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    return set(json.loads(ran.stdout.splitlines()[-1]))


def test_the_help_lists_every_command_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = [
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:4] == "    "
    ]
    assert [word for word in listed if word in COMMANDS] == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_alone_parses_its_own_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mesh {command} ")


def test_an_agent_imports_neither_the_policy_cli_nor_the_playground() -> None:
    found = imported("agent", "--help")
    assert {"agents.agent", "nats", "mesh.config"} <= found  # what it runs on
    assert not {m for m in found if m.split(".")[0] in ("policies", "gateway", "watchfiles")}
    assert not {m for m in found if m.startswith(("mesh.playground", "mesh.commands"))}


def test_a_demo_service_imports_no_nats_no_settings_and_no_engine() -> None:
    found = imported("demo-service", "--help")
    assert found == {"mesh.playground.demo"}


def test_an_unknown_command_is_told_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["nosuch", "--json"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in error
    assert all(f"'{command}'" in error for command in COMMANDS)
