"""An engine in a process of its own, so tests can watch its memory: argv[1] = upstream port."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from routes import directory

from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.metrics import Metrics


async def main(upstream_port: int) -> None:
    """Serve service `svc` on a free 127.0.0.1 port (printed) until stdin closes."""
    engine = Engine(
        Settings(), directory({"svc": [upstream_port]}), Metrics(), strip_mesh_headers=True
    )
    listener = Listener(engine, "127.0.0.1", 0)
    await listener.start(serve=False)
    await listener.serve()  # as the gateway does: its GC and heap settings are measured too
    print(listener.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await listener.stop(1.0)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
