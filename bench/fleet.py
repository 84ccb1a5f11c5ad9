"""Many agents in one process, for benchmarks that need a big mesh on a small machine.

    python -m bench.fleet --service svc --port 9000 --count 10 --prefix fleet-0

Each is the real agent (agents.agent.run) with its own NATS connection, view, policy
feed and admin port; they only share the event loop. Outbound proxies are off.
"""

from __future__ import annotations

import argparse
import asyncio

from agents.agent import AgentOptions, run
from mesh import config, logs
from mesh.node import runtime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", type=int, required=True, help="the service all of them check")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="fleet")
    args = parser.parse_args()
    settings = config.load()
    logs.setup(settings.log_level, as_json=False)

    async def fleet(stop: asyncio.Event) -> int:
        agents = [
            run(
                settings,
                AgentOptions(
                    service=args.service,
                    port=args.port,
                    host="127.0.0.1",
                    health_path="/healthz",
                    admin_port=0,
                    instance_id=f"{args.prefix}-{i}",
                    outbound="",
                ),
                stop,
            )
            for i in range(args.count)
        ]
        codes = await asyncio.gather(*agents)
        return max(codes)

    return runtime.run(fleet)


if __name__ == "__main__":
    raise SystemExit(main())
