"""`mesh policy`: validate, apply, inspect, roll back and sync policy documents."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from mesh import clock, config, durations
from mesh.bus import NatsBus
from mesh.config import Settings
from mesh.errors import Conflict, MeshError
from mesh.forwarding.defaults import default_service
from mesh.membership.census import census, live
from mesh.security.api_keys import hash_key
from policies.acks import AckCollector
from policies.loader import Loaded, load
from policies.plan import Change, as_yaml, plan, render
from policies.store import PolicyStore, bus_for


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("policy", help="policy documents: validate, apply, history")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = verbs.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(func=func)
        return sub

    def files(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-f",
            "--file",
            dest="paths",
            action="append",
            required=True,
            metavar="PATH",
            help="a YAML file or folder (repeatable)",
        )

    def waiting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--wait",
            action="store_true",
            help="report which live gateways and agents applied the change",
        )
        sub.add_argument(
            "--timeout", type=durations.argument, default=10.0, help="how long to wait (10s)"
        )

    files(verb("validate", "check documents without touching the mesh", _validate))
    verb("hash-key", "print an API key's SHA-256, as auth.keys stores it (key on stdin)", _hash_key)
    apply = verb("apply", "write changed documents (compare-and-set) and print the diff", _apply)
    files(apply)
    apply.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    apply.add_argument("--prune", action="store_true", help="delete keys no file mentions")
    waiting(apply)
    diff = verb("diff", "what apply would change", _diff)
    files(diff)
    diff.add_argument("--prune", action="store_true", help="include deletions")
    get = verb("get", "print a policy as stored", _get)
    get.add_argument("name", help="route/NAME, service/NAME or NAME")
    get.add_argument("--rev", type=int, help="an earlier revision")
    verb("list", "every policy with its revision", _list)
    history = verb("history", "every stored revision of a policy", _history)
    history.add_argument("name")
    rollback = verb("rollback", "restore an earlier revision as a new one", _rollback)
    rollback.add_argument("name")
    rollback.add_argument("--to", type=int, required=True, metavar="REV", help="the revision")
    waiting(rollback)
    delete = verb("delete", "remove a policy", _delete)
    delete.add_argument("name")
    waiting(delete)
    sync = verb("sync", "keep the bucket in step with a folder", _sync)
    sync.add_argument("folder")
    sync.add_argument("--watch", action="store_true", help="keep watching the folder")
    sync.add_argument("--prune", action="store_true", help="propagate deletions")
    sync.add_argument(
        "--debounce", type=durations.argument, default=0.3, help="quiet before a sync (300ms)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    return config.load(nats_url=args.nats_url, preset=args.preset)


def _loaded(args: argparse.Namespace) -> Loaded:
    """The documents of `args.paths`, checked as this machine's settings would fill them."""
    loaded = load(*args.paths, defaults=default_service(_settings(args)))
    for problem in loaded.errors:
        print(f"error: {problem}", file=sys.stderr)
    for problem in loaded.warnings:
        print(f"warning: {problem}", file=sys.stderr)
    return loaded


def _validate(args: argparse.Namespace) -> int:
    loaded = _loaded(args)
    if loaded.ok:
        count = len(loaded.documents)
        print(f"{count} document{'' if count == 1 else 's'} valid")
    return 0 if loaded.ok else 1


def _hash_key(args: argparse.Namespace) -> int:
    # From stdin, never an argument: arguments show in `ps` and in shell history.
    key = sys.stdin.buffer.readline().rstrip(b"\r\n")
    if not key:
        print("mesh policy hash-key: no key on stdin", file=sys.stderr)
        return 1
    print(hash_key(key))
    return 0


def _run(args: argparse.Namespace, work: Callable[[PolicyStore, NatsBus], Awaitable[int]]) -> int:
    async def main() -> int:
        bus = bus_for(_settings(args))
        try:
            await bus.start(wait=5.0)
            store = PolicyStore(bus)
            await store.open()
            return await work(store, bus)
        finally:
            await bus.close()

    try:
        return asyncio.run(main())
    except Conflict as exc:
        print(
            f"mesh policy: {exc}; someone else changed it: run the command again", file=sys.stderr
        )
        return 3


async def _write(
    args: argparse.Namespace, store: PolicyStore, bus: NatsBus, changes: Sequence[Change]
) -> int:
    """Write `changes`; with --wait, report the acknowledgements of every live node."""
    collector: AckCollector | None = None
    if getattr(args, "wait", False):
        timing = _settings(args).timing
        view = await census(bus, timing, min(0.5, timing.interval), asker="mesh-policy")
        collector = AckCollector(bus, live(view), clock.monotonic)
        await collector.start()
    started = clock.monotonic()
    revisions = await store.write(changes)
    for key, revision in revisions.items():
        print(f"wrote {key} revision {revision}")
    if collector is None:
        return 0
    collector.expect(revisions, started)
    complete = await collector.wait(args.timeout)
    table, clean = collector.report()
    print(table)
    took = collector.last_answer()
    state = "every live node applied it" if clean else "NOT applied everywhere"
    print(f"{len(collector.nodes)} nodes; {state}; last answer after {took * 1000:.0f} ms")
    return 0 if clean and complete else 4


def _apply(args: argparse.Namespace) -> int:
    loaded = _loaded(args)
    if not loaded.ok:
        return 1

    async def work(store: PolicyStore, bus: NatsBus) -> int:
        changes = plan(loaded.documents, await store.stored(), prune=args.prune)
        print(render(changes) or "no changes", end="" if changes else "\n")
        if args.dry_run or not changes:
            return 0
        return await _write(args, store, bus, changes)

    return _run(args, work)


def _diff(args: argparse.Namespace) -> int:
    loaded = _loaded(args)
    if not loaded.ok:
        return 1

    async def work(store: PolicyStore, bus: NatsBus) -> int:
        changes = plan(loaded.documents, await store.stored(), prune=args.prune)
        print(render(changes) or "no changes", end="" if changes else "\n")
        return 0

    return _run(args, work)


def _get(args: argparse.Namespace) -> int:
    async def work(store: PolicyStore, bus: NatsBus) -> int:
        key = await store.resolve(args.name)
        history = [e for e in await store.history(key) if args.rev in (None, e.revision)]
        if not history or history[-1].deleted:
            print(f"mesh policy: {key} has no such revision", file=sys.stderr)
            return 1
        entry = history[-1]
        print(f"# {key} revision {entry.revision}\n{as_yaml(entry.value)}", end="")
        return 0

    return _run(args, work)


def _list(args: argparse.Namespace) -> int:
    async def work(store: PolicyStore, bus: NatsBus) -> int:
        stored = await store.stored()
        print(f"{'KEY':<40} REVISION")
        for key, value in sorted(stored.items()):
            print(f"{key:<40} {value.revision}")
        return 0

    return _run(args, work)


def _history(args: argparse.Namespace) -> int:
    async def work(store: PolicyStore, bus: NatsBus) -> int:
        key = await store.resolve(args.name)
        print(f"{'REVISION':<9} {'WHEN':<20} WHAT")
        for entry in await store.history(key):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created))
            what = "deleted" if entry.deleted else f"{len(entry.value)} bytes"
            print(f"{entry.revision:<9} {when:<20} {what}")
        return 0

    return _run(args, work)


def _rollback(args: argparse.Namespace) -> int:
    async def work(store: PolicyStore, bus: NatsBus) -> int:
        key = await store.resolve(args.name)
        history = await store.history(key)
        target = next((e for e in history if e.revision == args.to), None)
        if target is None or target.deleted:
            raise MeshError(f"{key} has no revision {args.to} with a value to restore")
        current = history[-1]
        change = Change(
            key,
            "update",
            0 if current.deleted else current.revision,
            target.value,
            b"" if current.deleted else current.value,
            f"revision {args.to}",
        )
        print(render([change]), end="")
        return await _write(args, store, bus, [change])

    return _run(args, work)


def _delete(args: argparse.Namespace) -> int:
    async def work(store: PolicyStore, bus: NatsBus) -> int:
        key = await store.resolve(args.name)
        current = (await store.stored()).get(key)
        if current is None:
            raise MeshError(f"{key} does not exist")
        return await _write(
            args, store, bus, [Change(key, "delete", current.revision, b"", current.value, "")]
        )

    return _run(args, work)


def _sync(args: argparse.Namespace) -> int:
    from policies.sync import sync

    return _run(
        args,
        lambda store, bus: sync(
            store,
            args.folder,
            defaults=default_service(_settings(args)),
            watch=args.watch,
            prune=args.prune,
            debounce=args.debounce,
        ),
    )
