"""wait_until_set: the wait of the dispatcher's loops, which must let a shutdown through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from service.core.runtime import wait_until_set


async def until_cancelled_as_set(wait: Callable[[asyncio.Event], Awaitable[object]]) -> object:
    """Start ``wait``, then set its event and cancel it in the same turn of the loop, as a
    dispatcher's shutdown does when new work is announced at that moment."""
    event = asyncio.Event()
    task = asyncio.create_task(wait(event))
    await asyncio.sleep(0)  # one turn: the task is now waiting on the event
    event.set()
    task.cancel()
    return await task


async def test_a_cancellation_that_meets_the_event_is_not_swallowed() -> None:
    with pytest.raises(asyncio.CancelledError):
        await until_cancelled_as_set(lambda event: wait_until_set(event, 10))


async def test_asyncio_wait_for_swallows_it_which_is_why_it_is_not_used() -> None:
    """The behaviour the helper exists for (Python 3.11; 3.12 fixed wait_for)."""
    try:
        result = await until_cancelled_as_set(lambda event: asyncio.wait_for(event.wait(), 10))
    except asyncio.CancelledError:
        pytest.skip("this Python's asyncio.wait_for lets the cancellation through")
    assert result is True


async def test_it_says_whether_the_event_was_set_or_the_time_ran_out() -> None:
    event = asyncio.Event()
    assert await wait_until_set(event, 0.01) is False
    event.set()
    assert await wait_until_set(event, 10) is True
