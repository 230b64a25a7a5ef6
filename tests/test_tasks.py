"""core.tasks: how background tasks wait and stop."""

from __future__ import annotations

import asyncio

import pytest

from wfbatch.core.tasks import cancel_and_wait, wait_event


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancellation_that_comes_with_the_event_is_not_swallowed() -> None:
    # The race that kept a ComfyUI listener alive for ever on Python 3.11 with asyncio.wait_for: what
    # it waits for completes in the same loop iteration as the cancel, wait_for returns the result
    # and the cancellation is lost. Here the event is set and the task cancelled back to back.
    event = asyncio.Event()

    async def wait_again_and_again() -> None:
        while True:
            await wait_event(event, 60)
            event.clear()

    task = asyncio.create_task(wait_again_and_again())
    await asyncio.sleep(0.01)  # it waits now
    event.set()
    task.cancel()
    for _ in range(20):  # a few turns of the loop; a swallowed cancel waits 60 s more instead
        await asyncio.sleep(0)
    assert task.cancelled()


async def test_cancel_and_wait_takes_none_and_a_finished_task() -> None:
    await cancel_and_wait(None)
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait(done)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
