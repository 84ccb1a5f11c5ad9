"""The HAProxy binary: found (setting, PATH, Debian's place), its version and configs checked."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

from mesh.errors import HaproxyError

DEBIAN_PATH = "/usr/sbin/haproxy"  # not on a plain user's PATH on Debian
OLDEST = (2, 6)  # dynamic servers (`add server`) and `show proc` reload counts
MISSING = (
    "haproxy not found: install Debian's haproxy package (apt-get install haproxy) "
    "or set MESH_HAPROXY_BIN"
)
_VERSION = re.compile(r"HAProxy version (\d+)\.(\d+)(\S*)")
# HAProxy's message prefix: "[ALERT]    (12345) : config : ".
_ALERT = re.compile(r"^\[ALERT\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?(.*)$")


def find_binary(configured: str | None) -> str:
    """The binary to run: MESH_HAPROXY_BIN's value, else `haproxy` on PATH, else Debian's
    /usr/sbin/haproxy; HaproxyError naming the package if none is there, or if it is
    older than 2.6."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise HaproxyError(f"{MISSING} ({configured} is not an executable)")
    else:
        found = shutil.which("haproxy") or shutil.which(DEBIAN_PATH)
        if found is None:
            raise HaproxyError(MISSING)
    check_version(found)
    return found


def check_version(binary: str) -> str:
    """The version `binary -v` reports; HaproxyError if it is older than OLDEST."""
    try:
        out = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HaproxyError(f"{binary} -v failed: {error}") from None
    found = _VERSION.search(out)
    if found is None:
        raise HaproxyError(f"{binary} does not say which HAProxy version it is")
    version = f"{found[1]}.{found[2]}{found[3]}"
    if (int(found[1]), int(found[2])) < OLDEST:
        raise HaproxyError(
            f"haproxy {version} at {binary} is too old: the mesh needs 2.6 or newer "
            "(Debian 12's haproxy package)"
        )
    return version


async def check_config(binary: str, config: Path) -> None:
    """`haproxy -c -f config`; HaproxyError carrying its ALERT lines, condensed to one."""
    checker = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        "-f",
        str(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await checker.communicate()
    if checker.returncode != 0:
        text = out.decode(errors="replace")
        raise HaproxyError(f"haproxy refused the config: {alerts(text) or text.strip()}")


def alerts(text: str) -> str:
    """HAProxy's ALERT lines in `text`, without their prefixes, joined into one line
    (its closing "Fatal errors found" lines add nothing and are left out)."""
    found = [match[1].strip() for line in text.splitlines() if (match := _ALERT.match(line))]
    return "; ".join(line for line in found if not line.startswith(("Fatal errors", "Error(s)")))
