"""The results JSON: what the numbers depend on, written to bench/results/<name>-<time>.json."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.tools import tool_version

RESULTS = Path(__file__).resolve().parent / "results"


def environment(tools: dict[str, str]) -> dict[str, Any]:
    """What the numbers depend on, stored with them."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "tools": {name: tool_version(path) for name, path in tools.items()},
    }


def write_results(name: str, payload: dict[str, Any], folder: Path = RESULTS) -> Path:
    """bench/results/<name>-<UTC timestamp>.json; NaN becomes null."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{name}-{stamp}.json"
    path.write_text(json.dumps(_no_nan(payload), indent=2) + "\n")
    return path


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value
