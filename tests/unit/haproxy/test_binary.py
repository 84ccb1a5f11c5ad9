"""mesh.haproxy.binary: the binary found or refused in one line naming Debian's package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mesh.errors import HaproxyError
from mesh.haproxy import binary
from mesh.haproxy.binary import alerts, find_binary

MISSING = (
    "haproxy not found: install Debian's haproxy package (apt-get install haproxy) "
    "or set MESH_HAPROXY_BIN"
)


def fake_haproxy(tmp_path: Path, version: str) -> str:
    """A stand-in answering `-v` as HAProxy does (only for the version check)."""
    path = tmp_path / "haproxy"
    path.write_text(
        f"#!/bin/sh\necho 'HAProxy version {version} 2023/01/01 - https://haproxy.org/'\n"
    )
    path.chmod(0o755)
    return str(path)


def test_missing_everywhere_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binary, "DEBIAN_PATH", str(tmp_path / "sbin-haproxy"))
    with pytest.raises(HaproxyError) as missing:
        find_binary(None)
    assert str(missing.value) == MISSING


def test_a_configured_path_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(HaproxyError) as missing:
        find_binary(str(tmp_path / "nope"))
    assert str(missing.value) == f"{MISSING} ({tmp_path / 'nope'} is not an executable)"


def test_the_configured_binary_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_binary(fake_haproxy(tmp_path, "2.8.3-1")) == str(tmp_path / "haproxy")


def test_path_is_searched_before_debians_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_haproxy(tmp_path, "3.0.1")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary(None) == str(tmp_path / "haproxy")


def test_older_than_2_6_is_refused_naming_the_version(tmp_path: Path) -> None:
    with pytest.raises(HaproxyError) as old:
        find_binary(fake_haproxy(tmp_path, "2.4.22-0+deb11u1"))
    assert str(old.value) == (
        f"haproxy 2.4.22-0+deb11u1 at {tmp_path / 'haproxy'} is too old: the mesh needs "
        "2.6 or newer (Debian 12's haproxy package)"
    )


@pytest.mark.skipif(
    not (shutil.which("haproxy") or shutil.which(binary.DEBIAN_PATH)),
    reason="haproxy is not installed (Debian's haproxy package)",
)
def test_the_installed_haproxy_is_accepted() -> None:
    assert find_binary(None).endswith("haproxy")


def test_alerts_are_condensed_to_one_line() -> None:
    output = """[NOTICE]   (20778) : haproxy version is 2.6.12-1+deb12u3
[ALERT]    (20778) : config : parsing [t.cfg:3] : unknown keyword 'foo' in 'frontend' section
[ALERT]    (20778) : config : Error(s) found in configuration file : t.cfg
[ALERT]    (20778) : config : Fatal errors found in configuration."""
    assert alerts(output) == "parsing [t.cfg:3] : unknown keyword 'foo' in 'frontend' section"
