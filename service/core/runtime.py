"""The runtime of the long-running processes: the version, the event loop and the collector.

uvloop serves the same aiohttp and asyncpg code with less CPU per request (see the README's
Performance section for the measured difference); the standard loop remains one setting away
(``CALLBACKHUB_EVENT_LOOP=asyncio``) and is what platforms without uvloop get.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from importlib.metadata import version

log = logging.getLogger(__name__)


def package_version() -> str:
    try:
        return version("callbackhub")
    except Exception:  # running from a source tree that was never installed
        return "0.0.0"


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new event loop of the chosen kind."""
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform: the standard loop does the same job
            log.info("uvloop is not installed; using the standard asyncio event loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


# Young objects a collection waits for (Python's default: 700). A dispatcher holds thousands of
# live objects (requests in flight, deliveries claimed ahead, results waiting for the
# write-back) and allocates a hundred or so per request, so at 700 the collector ran every few
# requests and its older generations walked all of them again and again: 7-8% of the
# dispatcher's CPU per delivery in interleaved bench runs (docs/performance.md).
YOUNG_COLLECTION_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Leave what exists once a process has started (modules, models, pools) out of every
    future garbage collection. A full collection otherwise walks all of it, pausing the event
    loop for 50-100 ms every few seconds under load, which showed as bursts of slow echoes in
    the bench. What is created afterwards is collected as usual, in larger and rarer rounds."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


async def wait_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; True when it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when the task is cancelled
    just as the event is set or the time is up, swallowing the cancellation, and a loop that
    waits this way then never stops (a dispatcher's shutdown hung on it).
    ``asyncio.timeout`` lets a cancellation through.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
