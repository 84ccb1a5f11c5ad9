"""policies.cli without NATS: `mesh policy validate` checks files with this machine's settings."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from mesh import cli

SERVICE = "kind: Service\nname: orders\ntimeouts: {request: 5s}\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("MESH_"):
            monkeypatch.delenv(name)


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["policy", "validate", "-f", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_documents_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "orders.yaml").write_text(SERVICE)
    assert validate(tmp_path, capsys) == (0, "1 document valid\n", "")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_a_file_without_documents_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    (tmp_path / "empty.yaml").write_text(text)
    code, out, err = validate(tmp_path / "empty.yaml", capsys)
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path / 'empty.yaml'}: no policy documents " + (
        "(folders are searched for *.yaml and *.yml files)\n"
    )


def test_a_folder_without_documents_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text(SERVICE)
    code, out, err = validate(tmp_path, capsys)
    assert (code, out) == (1, "")
    assert "no policy documents" in err


def test_validation_fills_what_documents_leave_out_from_this_machines_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orders.yaml").write_text(SERVICE)
    monkeypatch.setenv("MESH_PER_TRY_TIMEOUT", "10")
    code, out, err = validate(tmp_path, capsys)
    assert (code, out) == (1, "")
    assert "orders.yaml[0] timeouts.per_try = 10.0: must not exceed request (left out here" in err


def test_hash_key_prints_the_digest_of_the_key_on_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"k-alice\n")))
    assert cli.main(["policy", "hash-key"]) == 0
    assert capsys.readouterr().out == hashlib.sha256(b"k-alice").hexdigest() + "\n"


def test_hash_key_refuses_an_empty_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    assert cli.main(["policy", "hash-key"]) == 1
    assert capsys.readouterr().err == "mesh policy hash-key: no key on stdin\n"
