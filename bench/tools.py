"""nginx, HAProxy, wrk and valgrind: found on PATH or in sbin, else installed with apt-get."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.console import BenchError, say

# Each tool with the Debian packages that provide it, the preferred first: nginx-light
# is enough (proxy, upstream keepalive, return) and pulls in least.
PACKAGES: dict[str, tuple[str, ...]] = {
    "nginx": ("nginx-light", "nginx"),
    "haproxy": ("haproxy",),
    "wrk": ("wrk",),
    "valgrind": ("valgrind",),
    "callgrind_control": ("valgrind",),  # bench.plane_cost switches counting with it
}
_POLICY_RC = Path("/usr/sbin/policy-rc.d")


def find_tool(name: str) -> str | None:
    """The tool on PATH or in an sbin directory (root's PATH may lack them under sudo)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def ensure_tools(names: Iterable[str]) -> dict[str, str]:
    """Path of each tool; missing ones are installed from Debian's packages first."""
    missing = [name for name in names if find_tool(name) is None]
    if missing:
        _install(missing)
    paths: dict[str, str] = {}
    for name in names:
        path = find_tool(name)
        if path is None:
            raise BenchError(f"{name} is still missing after apt-get install")
        paths[name] = path
    return paths


def _install(tools: list[str]) -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        packages = " ".join(PACKAGES[t][0] for t in tools)
        raise BenchError(f"missing {', '.join(tools)}: run `apt-get install -y {packages}` as root")
    updated = False
    with _no_service_start():
        for tool in tools:
            if _install_one(tool):
                continue
            if not updated:  # a stale or missing package list is the usual cause
                updated = True
                _apt("update")
                if _install_one(tool):
                    continue
            tried = ", ".join(PACKAGES[tool])
            raise BenchError(f"apt-get could not install {tool} (tried {tried})")


def _install_one(tool: str) -> bool:
    """Try the tool's packages in order of preference (nginx-light is gone from newer Debian)."""
    return any(_apt("install", "-y", "--no-install-recommends", p) for p in PACKAGES[tool])


def _apt(*args: str) -> bool:
    command = ["apt-get", "-q", *args]
    say("$ " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        say("  failed: " + " | ".join(done.stderr.strip().splitlines()[-3:]))
    return done.returncode == 0


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    """Keep Debian's package scripts from starting system nginx / HAProxy services.

    Their default configurations listen on every interface (port 80); the benchmark binds
    loopback only and runs copies of its own. policy-rc.d exiting 101 is Debian's switch for
    "do not start services"; one already present (as in containers) is left as it is.
    """
    if _POLICY_RC.exists():
        yield
        return
    say(f"writing {_POLICY_RC} (exit 101) so the packages start no system service")
    _POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
    _POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC.unlink(missing_ok=True)
        say(f"removed {_POLICY_RC}")


def tool_version(path: str) -> str:
    """First line of `<tool> -v` (nginx and wrk print it on stderr, wrk exits 1)."""
    done = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"
