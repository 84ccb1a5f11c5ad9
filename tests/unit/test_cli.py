"""The `mesh` command registry: every command in the help, only the chosen one imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mesh import cli

COMMANDS = [
    *("up", "members", "events", "config", "nats", "demo-service"),
    *("agent", "gateway", "policy"),
]

# Runs `mesh demo-service --help`, then `mesh agent --help`, in one fresh interpreter
# (each exits), and prints what each added to the modules that matter here.
PROBE = """
import json, sys
from mesh import cli
heavy = ("agents", "gateway", "policies", "watchfiles", "nats", "pydantic", "mesh")
before, added = set(sys.modules), {}
for command in ("demo-service", "agent"):
    try:
        cli.main([command, "--help"])
    except SystemExit:
        pass
    new = set(sys.modules) - before
    added[command] = sorted(m for m in new if m.split(".")[0] in heavy)
    before |= new
print(json.dumps(added))
"""


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    """The modules `mesh demo-service` imports, and those `mesh agent` adds to them."""
    ran = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return {k: set(v) for k, v in json.loads(ran.stdout.splitlines()[-1]).items()}


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


def test_a_demo_service_imports_no_nats_no_settings_and_no_engine(
    imported: dict[str, set[str]],
) -> None:
    found = imported["demo-service"]
    assert "mesh.playground.demo" in found
    unwanted = ("nats", "pydantic", "agents", "gateway", "policies", "mesh.config", "mesh.engine")
    assert not {m for m in found if m.startswith(unwanted)}, found


def test_an_agent_imports_neither_the_policy_cli_nor_the_playground(
    imported: dict[str, set[str]],
) -> None:
    found = imported["agent"]
    assert {"agents.agent", "nats", "mesh.config"} <= found  # what it runs on
    assert not {m for m in found if m.split(".")[0] in ("policies", "gateway", "watchfiles")}
    assert not {m for m in found if m.startswith(("mesh.playground.up", "mesh.commands"))}


def test_an_unknown_command_is_told_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["nosuch", "--json"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in error
    assert all(f"'{command}'" in error for command in COMMANDS)


def test_up_secure_runs_its_own_nats_so_refuses_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["up", "--secure", "--nats-url", "nats://127.0.0.1:4222"]) == 2
    assert capsys.readouterr().err == "mesh up: --secure runs its own NATS: leave out --nats-url\n"
