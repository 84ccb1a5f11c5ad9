"""`mesh policy sync DIR [--watch]`: keep the bucket in step with a folder of documents."""

from __future__ import annotations

import asyncio
import logging
import sys

from watchfiles import awatch

from mesh.errors import Conflict
from mesh.policy.service import Service
from policies.loader import load
from policies.plan import plan, render
from policies.store import PolicyStore

log = logging.getLogger(__name__)


async def sync_once(store: PolicyStore, folder: str, *, defaults: Service, prune: bool) -> bool:
    """Apply the folder as it is now; invalid folders change nothing. True if consistent."""
    loaded = load(folder, defaults=defaults)
    for problem in loaded.errors:
        print(f"error: {problem}", file=sys.stderr)
    if not loaded.ok:
        print("not synced: fix the errors above", file=sys.stderr, flush=True)
        return False
    for attempt in range(2):
        changes = plan(loaded.documents, await store.stored(), prune=prune)
        if not changes:
            return True
        print(render(changes), end="", flush=True)
        try:
            for key, revision in (await store.write(changes)).items():
                print(f"wrote {key} revision {revision}", flush=True)
            return True
        except Conflict as exc:
            # Someone wrote meanwhile: read again and recompute once, then give up loudly.
            print(
                f"conflict ({exc}); {'retrying' if attempt == 0 else 'giving up'}",
                file=sys.stderr,
                flush=True,
            )
    return False


async def sync(
    store: PolicyStore,
    folder: str,
    *,
    defaults: Service,
    watch: bool,
    prune: bool,
    debounce: float,
    stop: asyncio.Event | None = None,
) -> int:
    """Sync once; with `watch`, again after every change until Ctrl-C or `stop` is set."""
    ok = await sync_once(store, folder, defaults=defaults, prune=prune)
    if not watch:
        return 0 if ok else 1
    print(f"watching {folder} (Ctrl-C stops)", flush=True)
    changes = awatch(folder, debounce=int(debounce * 1000), recursive=True, stop_event=stop)
    async for _ in changes:
        await sync_once(store, folder, defaults=defaults, prune=prune)
    return 0
