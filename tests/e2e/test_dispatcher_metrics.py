"""A standalone dispatcher serves its own /metrics when CALLBACKHUB_METRICS_PORT is set."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support import processes
from tests.support.polling import eventually


async def test_standalone_dispatcher_serves_metrics(database: str, tmp_path: Path) -> None:
    port = processes.free_port()
    env = processes.callbackhub_env(database, tmp_path / "data", metrics_port=str(port))
    dispatcher = processes.dispatcher("dispatcher", env, tmp_path)
    await processes.start(dispatcher)
    try:

        async def scrape() -> str:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/metrics") as response,
                ):
                    return await response.text() if response.status == 200 else ""
            except aiohttp.ClientError:
                return ""

        text = await eventually(scrape, lambda body: body != "", timeout=20)
        assert "callbackhub_deliveries_in_flight" in text
        assert "callbackhub_delivery_attempt_duration_seconds" in text
    finally:
        assert await dispatcher.terminate() == 0
