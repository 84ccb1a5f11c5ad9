"""`mesh explain METHOD URL`: where a node would send that request, and why, asked over NATS."""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from mesh import cli, config, durations, subjects
from mesh.bus import NatsBus
from mesh.errors import BusTimeout, BusUnavailable, ConfigError, NoResponders
from mesh.forwarding.explanation import Explanation, Problem, Question
from mesh.observe.explain_text import render


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "explain",
        parents=[cli.common_options("--nats-url")],  # nothing here is timed by a preset or logs
        help="which route, service and instances a node picks for a request, and why",
    )
    parser.add_argument("method", help="the request's method, e.g. GET")
    parser.add_argument("url", help="http://host[:port]/path?query, or /path with -H 'Host: ..'")
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeatable); Host here wins over the URL's",
    )
    parser.add_argument(
        "--node",
        default="",
        metavar="SERVICE[/INSTANCE]",
        help="ask a node of this service (a gateway's name, or an agent's service, whose "
        "outbound proxy answers), or that instance; default: any gateway. "
        "The first to answer is shown",
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument(
        "--timeout",
        type=durations.argument,
        default=3.0,
        help="how long to wait for NATS and for an answer (3s)",
    )
    parser.set_defaults(func=_explain)


def question(method: str, url: str, headers: list[str]) -> Question:
    """The request `mesh explain` describes, in origin form with its Host apart."""
    lower = url.lower()
    if lower.startswith(("http://", "https://")):
        authority, slash, rest = url.partition("://")[2].partition("/")
        host, target = authority, slash + rest
        if "?" in host:  # http://host?q
            host, _, query = host.partition("?")
            target = "/?" + query
        target = target or "/"
    elif url.startswith("/"):
        host, target = "", url
    else:
        raise ConfigError(f"{url!r}: give http://host/path or a path starting with /")
    if "\r" in url or "\n" in url:
        raise ConfigError(f"{url!r}: CR or LF in the URL, which no request line carries")
    pairs = []
    for line in headers:
        if "\r" in line or "\n" in line:
            raise ConfigError(f"-H {line!r}: CR or LF in a header, which would end it")
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise ConfigError(f"-H {line!r}: give 'Name: value'")
        if name.lower() == "host":
            host = value.strip()
        else:
            pairs.append((name, value.strip()))
    fields = {"method": method, "target": target, "host": host, "headers": pairs}
    try:
        for text in (target, host, *(part for pair in pairs for part in pair)):
            text.encode("latin-1")  # what an HTTP head can carry
        return msgspec.convert(fields, Question)
    except (msgspec.ValidationError, UnicodeEncodeError) as exc:
        raise ConfigError(f"not an HTTP request: {exc}") from None


def subject(node: str) -> str:
    """Where to ask: any gateway, a service's nodes, or one instance (SERVICE/INSTANCE)."""
    if not node:
        return subjects.EXPLAIN
    service, _, instance = node.partition("/")
    try:
        return subjects.explain(service, instance)
    except ValueError:
        raise ConfigError(f"--node {node!r}: give SERVICE or SERVICE/INSTANCE") from None


def _explain(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ConfigError("--timeout: more than 0 s")
    asked = question(args.method, args.url, args.headers)
    to = subject(args.node)
    settings = config.load(nats_url=args.nats_url)

    async def ask() -> bytes:
        bus = NatsBus(settings, name="mesh-explain")
        try:
            await bus.start(wait=args.timeout)
            return await bus.request(to, msgspec.json.encode(asked), args.timeout)
        except (NoResponders, BusTimeout):
            who = f"node of {args.node}" if args.node else "gateway"
            raise BusUnavailable(f"no {who} answered on {to} within {args.timeout:g} s") from None
        finally:
            await bus.close()

    answer = asyncio.run(ask())
    try:
        explanation = msgspec.json.decode(answer, type=Explanation)
    except msgspec.ValidationError:
        problem = msgspec.json.decode(answer, type=Problem)
        raise ConfigError(f"{problem.node} could not read the question: {problem.error}") from None
    print(answer.decode() if args.json else render(explanation))
    return 0
