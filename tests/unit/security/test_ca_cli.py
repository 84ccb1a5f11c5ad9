"""`mesh ca init`, `mesh nats creds`: the files, their modes, no overwrite without --force."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_cli import mesh_command

from mesh import cli
from mesh.security import pki


def test_init_writes_a_ca_and_keeps_it_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    made = mesh_command("ca", "init", "--dir", str(folder), "--trust-domain", "corp.example")
    assert made.returncode == 0, made.stderr
    assert "mesh CA for corp.example" in made.stdout
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600
    first = pki.load_authority(folder / "ca.crt", folder / "ca.key")
    assert "corp.example" in first.cert.subject.rfc4514_string()

    again = mesh_command("ca", "init", "--dir", str(folder))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"mesh ca: {folder / 'ca.crt'} already exists; --force replaces the CA "
        "(certificates it signed are then no longer trusted)"
    )
    assert pki.load_authority(folder / "ca.crt", folder / "ca.key").cert == first.cert

    forced = mesh_command("ca", "init", "--dir", str(folder), "--force")
    assert forced.returncode == 0
    assert pki.load_authority(folder / "ca.crt", folder / "ca.key").cert != first.cert
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600


def test_serve_without_a_ca_ends_with_one_line(tmp_path: Path) -> None:
    ran = mesh_command("ca", "serve", "--dir", str(tmp_path / "none"))
    assert ran.returncode == 2
    missing = tmp_path / "none" / "ca.crt"
    assert ran.stderr.strip() == f"mesh ca: cannot read {missing}: No such file or directory"


def test_a_folder_that_cannot_be_made_ends_with_one_line(tmp_path: Path) -> None:
    """A path under a regular file (this runs as root too, which ignores modes)."""
    (tmp_path / "file").write_text("")
    impossible = tmp_path / "file" / "sub"
    for args, command in (
        (("ca", "init", "--dir", str(impossible)), "ca"),
        (("nats", "creds", "--out", str(impossible)), "nats"),
    ):
        ran = mesh_command(*args)
        assert ran.returncode == 2
        assert ran.stderr.strip() == f"mesh {command}: cannot write {impossible}: Not a directory"


@pytest.mark.parametrize(
    "args",
    [
        ["ca", "init", "--nats-url", "nats://h:1"],  # init never talks to NATS
        ["ca", "init", "--preset", "lan"],
        ["ca", "serve", "--preset", "lan"],  # no failure detection to time
        ["nats", "setup", "--preset", "lan"],
    ],
)
def test_a_flag_the_command_would_ignore_is_refused(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parser(args[0]).parse_args(args)
    assert exited.value.code == 2
    assert f"unrecognized arguments: {' '.join(args[2:])}" in capsys.readouterr().err
