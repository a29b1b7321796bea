"""LISTEN for wake-ups on a connection of its own, reconnecting when it is lost.

A notification only wakes the claim loop early; polling finds the work anyway, so a lost
wake-up costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from service.core.runtime import wait_until_set

log = logging.getLogger(__name__)
CHANNEL = "callbackhub_due"
PING_INTERVAL = 10.0
RECONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


async def listen_forever(dsn: str, wake: Callable[[], None]) -> None:
    """Keep a LISTEN open on ``CHANNEL`` until cancelled, calling ``wake`` on each notify."""
    while True:
        connection = await _connect(dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _, lost=lost: lost.set())
        try:
            await connection.add_listener(CHANNEL, lambda *_: wake())
            wake()  # anything that arrived while we were not listening
            await _until_lost(connection, lost)
            log.warning("LISTEN connection lost; reconnecting")
        finally:
            if not connection.is_closed():
                await connection.close(timeout=2)


async def _until_lost(connection: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Return when the connection is gone; a periodic ping finds half-open connections."""
    while not await wait_until_set(lost, PING_INTERVAL):
        try:
            await connection.execute("SELECT 1", timeout=5)
        except RECONNECT_ERRORS:
            return


async def _connect(dsn: str) -> asyncpg.Connection:
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RECONNECT_ERRORS),
        wait=wait_exponential(multiplier=0.1, max=5),
    )
    async for attempt in retrying:
        with attempt:
            connection: asyncpg.Connection = await asyncpg.connect(dsn, timeout=10)
            return connection
    raise AssertionError("unreachable")
