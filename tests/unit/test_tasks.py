"""mesh.tasks.cancel_and_wait: the task ends, its errors surface, the caller stays cancellable."""

from __future__ import annotations

import asyncio

import pytest

from mesh.tasks import cancel_and_wait


async def test_a_running_task_is_cancelled_and_has_ended_on_return() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_cancellation_swallowed_by_wait_for_is_asked_again() -> None:
    # Python 3.11's wait_for returns the result when it is cancelled just as its future
    # completes (gh-86296): the task runs on as if never cancelled. nats-py's requests
    # use wait_for, so a node told to stop mid-request would wait for ever.
    futures: list[asyncio.Future[None]] = []

    async def requests_forever() -> None:
        while True:
            futures.append(asyncio.get_running_loop().create_future())
            await asyncio.wait_for(futures[-1], 60)

    task = asyncio.create_task(requests_forever())
    await asyncio.sleep(0)
    futures[-1].set_result(None)  # the answer arrives in the same step as the cancel
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()


async def test_none_is_nothing_to_do() -> None:
    await cancel_and_wait(None)


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    async def stubborn() -> None:
        # Takes a while to end once cancelled, so the caller is still waiting on it.
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.05))

    inner = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.01)  # the caller now waits for `inner` to end
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
