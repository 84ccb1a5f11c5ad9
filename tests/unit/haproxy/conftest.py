"""Fixtures of the HAProxy renderer's tests: the real binary, and configurations it checked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from haproxy_config import Check, haproxy_binary


@pytest.fixture(scope="session")
def haproxy() -> str:
    found = haproxy_binary()
    if found is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    return found


@pytest.fixture
def checked(haproxy: str, tmp_path: Path) -> Check:
    """Writes a configuration, has `haproxy -c` check it, and gives it back."""

    def check(config: str) -> str:
        path = tmp_path / "checked.cfg"
        path.write_text(config)
        result = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=20
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return config

    return check
