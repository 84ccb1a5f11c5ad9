"""The `mesh` command: built-in subcommands plus those the installed packages register."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import get_args

from mesh import logs
from mesh.errors import MeshError
from mesh.timing import Preset

# Installed packages add commands here; each names a register(commands, common) function.
GROUP = "natsmesh.commands"
# The built-in commands, in `mesh --help` order, named like the packages' entry points.
_BUILT_IN = tuple(
    EntryPoint(name, value, GROUP)
    for name, value in (
        ("up", "mesh.playground.up:register"),
        ("members", "mesh.commands:register_members"),
        ("events", "mesh.observe.events:register"),
        ("explain", "mesh.observe.explain:register"),
        ("top", "mesh.observe.top:register"),
        ("tap", "mesh.observe.tap:register"),
        ("config", "mesh.commands:register_config"),
        ("nats", "mesh.commands:register_nats"),
        ("demo-service", "mesh.playground.demo:register"),
    )
)


COMMON = ("--nats-url", "--preset", "--log-level")


def common_options(*wanted: str) -> argparse.ArgumentParser:
    """A parent parser with the common options `wanted` (all by default): a command takes
    only the flags it acts on."""
    common = argparse.ArgumentParser(add_help=False)
    for flag in wanted or COMMON:
        if flag == "--nats-url":
            common.add_argument(flag, help="NATS server URL (setting nats_url)")
        elif flag == "--preset":
            common.add_argument(
                flag, choices=get_args(Preset), help="failure-detection timing preset (lan)"
            )
        elif flag == "--log-level":
            common.add_argument(flag, choices=get_args(logs.Level))
        else:
            raise ValueError(f"{flag}: not a common option")
    return common


def _commands() -> dict[str, EntryPoint]:
    installed = sorted(entry_points(group=GROUP), key=lambda entry: entry.name)
    return {entry.name: entry for entry in (*_BUILT_IN, *installed)}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `mesh` parser with every command, or with `command` alone.

    A command's module is imported only to add it: `mesh agent` never loads the policy
    CLI, watchfiles or the playground, and a demo service not even NATS.
    """
    root = argparse.ArgumentParser(
        prog="mesh", description="natsmesh: a service mesh for HTTP services on NATS"
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for name, entry in _commands().items():
        if command in (None, name):
            entry.load()(commands, common)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The root parser takes no option but --help: the first other word names the command.
    # Without a known one (`mesh`, `mesh --help`, a typo), every command is added, so
    # the help lists them all.
    chosen = next((word for word in argv if not word.startswith("-")), None)
    args = parser(chosen if chosen in _commands() else None).parse_args(argv)
    try:
        return int(args.func(args))
    except MeshError as exc:
        print(f"mesh {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
