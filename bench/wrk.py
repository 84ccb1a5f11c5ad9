"""wrk, the load generator: one pinned run, and the parsing of its --latency report."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass

from bench.console import BenchError
from bench.cores import pinned

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_BINARY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_TIME = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*$", re.MULTILINE)
_SUMMARY = re.compile(r"^\s*(\d+) requests in (\S+), ([\d.]+)([KMGTP]?)B read", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_time_ms(text: str) -> float:
    """A wrk duration ("370.00us", "1.20ms", "2.00s", "1.50m") in milliseconds."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match[1]) * _TIME_UNITS_MS[match[2]]


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # percentile ("50", "99") -> milliseconds
    bytes_read: int
    non_2xx: int  # a proxy answering errors fast must not look fast
    socket_errors: int  # connect + read + write + timeout

    @property
    def p50(self) -> float:
        return self.latency_ms.get("50", math.nan)

    @property
    def p99(self) -> float:
        return self.latency_ms.get("99", math.nan)

    @property
    def bytes_per_response(self) -> float:
        """Headers included; shows that every response carried its whole body."""
        return self.bytes_read / self.requests if self.requests else math.nan


def parse_wrk(output: str) -> WrkResult:
    """wrk's report (run with --latency); raises ValueError when it is not one."""
    rps = _RPS.search(output)
    summary = _SUMMARY.search(output)
    if rps is None or summary is None:
        raise ValueError(f"not a wrk report:\n{output}")
    latencies: dict[str, float] = {}
    if "Latency Distribution" in output:
        block = output.split("Latency Distribution", 1)[1]
        for match in _PERCENTILE.finditer(block):
            latencies[match[1].removesuffix(".0")] = parse_time_ms(match[2])
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests=int(summary[1]),
        seconds=parse_time_ms(summary[2]) / 1000.0,
        rps=float(rps[1]),
        latency_ms=latencies,
        bytes_read=round(float(summary[3]) * _BINARY_UNITS[summary[4]]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run_wrk(url: str, *, connections: int, duration: int, cpus: str, threads: int = 1) -> WrkResult:
    """One wrk run pinned to `cpus`. One thread by default: it has a single core anyway."""
    command = [
        "wrk",
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={duration}s",
        "--latency",
        url,
    ]
    wrk = subprocess.Popen(
        pinned(command, cpus), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = wrk.communicate(timeout=duration + 60)
    finally:
        # On Ctrl-C or a timeout: kill and reap it here (subprocess.run waits only 0.25 s).
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    if wrk.returncode != 0:
        raise BenchError(f"wrk failed ({wrk.returncode}): {err or out}")
    return parse_wrk(out)
