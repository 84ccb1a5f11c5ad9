"""Active health checks of the local service: a pure threshold rule and its HTTP shell."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from mesh.messages import Health
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    health: Health
    streak: int  # consecutive results that disagree with `health`


def judge(verdict: Verdict, ok: bool, *, fail_after: int, pass_after: int) -> Verdict:
    """Fold one check result in: it takes a streak of disagreeing results to flip."""
    agrees = ok == (verdict.health == "passing")
    if agrees:
        return Verdict(verdict.health, 0)
    streak = verdict.streak + 1
    if streak >= (fail_after if verdict.health == "passing" else pass_after):
        return Verdict("passing" if ok else "failing", 0)
    return Verdict(verdict.health, streak)


class HealthChecker:
    """GETs the service's health path every interval; reports every change at once."""

    def __init__(
        self,
        url: str,
        *,
        interval: float,
        timeout: float,
        fail_after: int,
        pass_after: int,
        on_change: Callable[[Health, str], None],
    ) -> None:
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.fail_after = fail_after
        self.pass_after = pass_after
        self.on_change = on_change
        self.verdict = Verdict("failing", 0)
        self.last_reason = "not checked yet"
        self._told: tuple[Health, str] | None = None  # what the log last said
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def first_check(self) -> Health:
        """One check before the first announcement, so it carries the truth."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(force_close=True),
        )
        ok, self.last_reason = await self._probe()
        self.verdict = Verdict("passing" if ok else "failing", 0)
        self._tell()
        return self.verdict.health

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-check")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            ok, reason = await self._probe()
            self.last_reason = reason
            before = self.verdict.health
            self.verdict = judge(
                self.verdict, ok, fail_after=self.fail_after, pass_after=self.pass_after
            )
            self._tell()
            if self.verdict.health != before:
                self.on_change(self.verdict.health, reason)

    def _tell(self) -> None:
        """Log the verdict at start and when it, or the reason it fails, changes: once, not
        at every check, so that a service that never answers is explained, not repeated."""
        health = self.verdict.health
        told = (health, self.last_reason if health == "failing" else "")
        if told == self._told:
            return
        self._told = told
        if health == "passing":
            log.info("service is passing its health check (GET %s)", self.url)
        else:
            log.warning(
                "service is failing its health check, so it gets no traffic: GET %s: %s",
                self.url,
                self.last_reason,
            )

    async def _probe(self) -> tuple[bool, str]:
        assert self._session is not None
        try:
            async with self._session.get(self.url, allow_redirects=False) as response:
                await response.read()
                if 200 <= response.status < 400:
                    return True, f"HTTP {response.status}"
                return False, f"HTTP {response.status}"
        except TimeoutError:
            return False, f"no answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()
