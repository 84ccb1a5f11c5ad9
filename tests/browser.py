"""A headless Chromium (Debian's) driven over the Chrome DevTools Protocol, for page tests.

No browser is ever downloaded: /usr/bin/chromium is the test-tools dependency of
`make test`. The protocol runs over a websocket with aiohttp's client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,860",
]
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")

Listener = Callable[[dict[str, Any]], None]


class Page:
    """One tab: commands and events of its CDP session over the browser's websocket."""

    def __init__(self, browser: Browser, session: str) -> None:
        self._browser = browser
        self.session = session

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.send(method, session=self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float) -> Any:
        """Poll `expression` in the page until it is truthy; AssertionError naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(f"!!({expression})")
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not seen in the page within {timeout} s")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    async def answer_auth(self, username: str, password: str) -> tuple[list[str], list[str]]:
        """Answer every HTTP auth challenge as a person at the browser's prompt would.

        Returns the URLs the page requested and those that were challenged, filled in as
        they come.
        """
        requested: list[str] = []
        challenged: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            params = event["params"]
            if event["method"] == "Fetch.requestPaused":
                requested.append(params["request"]["url"])
                self._browser.spawn(
                    self.send("Fetch.continueRequest", requestId=params["requestId"])
                )
            elif event["method"] == "Fetch.authRequired":
                challenged.append(params["request"]["url"])
                self._browser.spawn(
                    self.send(
                        "Fetch.continueWithAuth",
                        requestId=params["requestId"],
                        authChallengeResponse={
                            "response": "ProvideCredentials",
                            "username": username,
                            "password": password,
                        },
                    )
                )

        self._browser.listen(self.session, on_event)
        await self.send("Fetch.enable", handleAuthRequests=True, patterns=[{"urlPattern": "*"}])
        return requested, challenged


class Browser:
    """A Chromium process with its own profile under `profile`; close() ends it."""

    def __init__(self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse):
        self._process = process
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, Listener] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, profile: Path, timeout: float = 15.0) -> Browser:
        if shutil.which(CHROMIUM) is None:
            raise AssertionError(
                f"{CHROMIUM} missing: `make test-tools` installs Debian's chromium"
            )
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its renderers and helpers end with it (killpg)
        )
        session: aiohttp.ClientSession | None = None
        try:
            url = await asyncio.wait_for(_devtools_url(process), timeout)
            session = aiohttp.ClientSession()
            ws = await session.ws_connect(url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout())
        except BaseException:
            if session is not None:
                await session.close()
            await _end(process)
            raise
        browser = cls(process, ws)
        browser._session = session
        return browser

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        answer = self._pending[message_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(answer, 10.0)

    def listen(self, session: str, listener: Listener) -> None:
        self._listeners[session] = listener

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def page(self) -> Page:
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        return Page(self, attached["sessionId"])

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(AssertionError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif (listener := self._listeners.get(data.get("sessionId", ""))) is not None:
                listener(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AssertionError("the browser closed its DevTools socket"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 2.0)
        await self._ws.close()
        await self._session.close()
        self._reader.cancel()
        for task in [*self._tasks, self._reader]:
            with contextlib.suppress(BaseException):
                await task
        await _end(self._process)

    _session: aiohttp.ClientSession


async def _devtools_url(process: asyncio.subprocess.Process) -> str:
    """Chromium says where its DevTools websocket listens on stderr, once it is ready."""
    assert process.stderr is not None
    seen = []
    while line := await process.stderr.readline():
        found = _LISTENING.search(line)
        if found:
            # Its later chatter must not fill the pipe and stall it.
            asyncio.get_running_loop().create_task(_drain(process.stderr))
            return found.group(1).decode()
        seen.append(line.decode(errors="replace").strip())
    raise AssertionError("chromium exited before DevTools listened: " + " | ".join(seen[-5:]))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _end(process: asyncio.subprocess.Process) -> None:
    """Wait for Chromium to exit (after Browser.close) or end it, helpers included."""
    try:
        await asyncio.wait_for(process.wait(), 3.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
