"""`mesh demo-service`: a small aiohttp app that says which instance answered.

It also takes orders for chaos tests and demos: `POST /_demo/fail?status=503` makes
every answer fail (with `&every=10`, every tenth answer from then on), `POST
/_demo/delay?ms=300` slows every answer, `POST /_demo/reset` undoes both. `/healthz`
follows the failure switch when `?health=1` is given. With `--calls other --via
http://127.0.0.1:15001` every answer includes one from `other`, called by name through
the agent's outbound proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mesh import logs
from mesh.addresses import hostport
from mesh.node import runtime
from mesh.node.ports import binding


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("demo-service", parents=[common], help="run the demo HTTP service")
    parser.add_argument("--service", default="hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--calls", default="", help="a service to call on every request")
    parser.add_argument("--via", default="", help="outbound proxy URL for --calls (the agent's)")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    logs.setup(args.log_level or "info", as_json=False)
    return main(args.service, args.host, args.port, args.instance_id, args.calls, args.via)


class DemoState:
    def __init__(self, service: str, instance: str, calls: str = "", via: str = "") -> None:
        self.service = service
        self.instance = instance
        self.calls = calls  # a service this one calls on every request, through `via`
        self.via = via  # its agent's outbound proxy, e.g. http://127.0.0.1:15001
        self.fail_status = 0
        self.fail_every = 1  # of the answers, this one in `fail_every` fails
        self.answers = 0
        self.fail_health = False
        self.delay = 0.0


def app(state: DemoState) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        if state.delay:
            await asyncio.sleep(state.delay)
        body = await request.read()
        payload = {
            "service": state.service,
            "instance": state.instance,
            "method": request.method,
            "path": request.path_qs,
            "received_bytes": len(body),
            "pid": os.getpid(),
        }
        peer = request.headers.get("x-mesh-peer")
        if peer:  # with mTLS: the caller's identity, as its agent's inbound listener saw it
            payload["peer"] = peer
        if state.calls:
            payload["upstream"] = await _call(request.app["client"], state, request.path_qs)
        state.answers += 1
        if state.fail_status and state.answers % state.fail_every == 0:
            return web.json_response(payload, status=state.fail_status)
        return web.json_response(payload, headers={"x-instance": state.instance})

    async def healthz(request: web.Request) -> web.Response:
        if state.fail_health:
            return web.json_response({"status": "failing"}, status=503)
        return web.json_response({"status": "ok", "instance": state.instance})

    async def fail(request: web.Request) -> web.Response:
        state.fail_status = int(request.query.get("status", "503"))
        state.fail_every = max(1, int(request.query.get("every", "1")))
        state.answers = 0
        state.fail_health = request.query.get("health") == "1"
        return web.json_response({"fail_status": state.fail_status})

    async def delay(request: web.Request) -> web.Response:
        state.delay = float(request.query.get("ms", "0")) / 1000
        return web.json_response({"delay_ms": state.delay * 1000})

    async def reset(request: web.Request) -> web.Response:
        state.fail_status, state.fail_every, state.fail_health, state.delay = 0, 1, False, 0.0
        return web.json_response({"reset": True})

    async def client(app: web.Application) -> AsyncIterator[None]:
        app["client"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        await app["client"].close()

    application = web.Application(client_max_size=1 << 30)
    application.cleanup_ctx.append(client)
    application.router.add_get("/healthz", healthz)
    application.router.add_post("/_demo/fail", fail)
    application.router.add_post("/_demo/delay", delay)
    application.router.add_post("/_demo/reset", reset)
    application.router.add_route("*", "/{tail:.*}", answer)
    return application


async def _call(client: aiohttp.ClientSession, state: DemoState, path: str) -> object:
    """Call the other service by name through our agent, as any mesh service would."""
    try:
        async with client.get(f"http://{state.calls}{path}", proxy=state.via or None) as reply:
            body = await reply.read()
            try:
                return {"status": reply.status, "body": json.loads(body)}
            except ValueError:
                return {"status": reply.status, "body": body.decode(errors="replace")}
    except aiohttp.ClientError as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


async def serve(state: DemoState, host: str, port: int, stop: asyncio.Event) -> int:
    runner = web.AppRunner(app(state), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        with binding(hostport(host, port), "--port"):
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(service: str, host: str, port: int, instance: str, calls: str = "", via: str = "") -> int:
    state = DemoState(service, instance or f"{service}-{socket.gethostname()}-{port}", calls, via)

    async def run(stop: asyncio.Event) -> int:
        return await serve(state, host, port, stop)

    return runtime.run(run)
