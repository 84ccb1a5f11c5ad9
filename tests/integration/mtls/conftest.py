"""mTLS tests run on uvloop, what every mesh process uses, and on the stdlib loop too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Both loops (their TLS, peer certificates and accepted sockets differ); the
    seconds-long renewal test on uvloop only."""
    if "renewal" in item.name:
        return {"uvloop": uvloop.new_event_loop}
    return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
