"""How the processes of a split deployment start and stop: a ``callbackhub dispatcher`` started
before anything else still delivers, and SIGTERM to ``serve --workers N`` stops every worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import postgres
from tests.support.fleet import Fleet
from tests.support.processes import Process, callbackhub_env, dispatcher, free_port, serve
from tests.support.tokens import auth


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    dsn = await postgres.create_database(server_dsn, template=None)
    yield dsn
    await postgres.drop_database(server_dsn, dsn)


async def _emit_one(api: Process, receiver_url: str) -> None:
    partner = str(uuid.uuid4())
    async with aiohttp.ClientSession(base_url=api.url) as http:
        response = await http.post(
            "/partners", json={"name": "Acme", "partnerUniqueId": partner}, headers=auth()
        )
        assert response.status == 201
        response = await http.put(
            f"/partners/{partner}/callbacks/2", json={"url": receiver_url}, headers=auth()
        )
        assert response.status == 201
        note = {
            "processUniqueId": str(uuid.uuid4()),
            "noteUniqueId": str(uuid.uuid4()),
            "subject": "s",
            "text": "t",
            "createdAt": "2026-01-01T00:00:00Z",
        }
        response = await http.post(
            f"/partners/{partner}/callbacks/2/echo", json=note, headers=auth()
        )
        assert response.status == 202


async def test_a_dispatcher_started_before_the_schema_exists_delivers(
    empty_database: str, fleet: Fleet
) -> None:
    receiver = await fleet.receiver()
    env = callbackhub_env(empty_database, fleet.logs / "data")
    await fleet.add(dispatcher("dispatcher", env, fleet.logs)).spawn().wait_ready()
    api = fleet.add(serve("api", env, fleet.logs, dispatcher=False))
    await api.spawn().wait_ready()

    await _emit_one(api, receiver.url)

    await receiver.wait_for(1)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


async def _refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_sigterm_to_serve_with_workers_stops_every_worker(
    database: str, fleet: Fleet
) -> None:
    env = callbackhub_env(database, fleet.logs / "data")
    port = free_port()
    env = {**env, "CALLBACKHUB_HOST": "127.0.0.1", "CALLBACKHUB_PORT": str(port)}
    api = fleet.add(
        Process(
            "api", ["serve", "--workers", "2", "--no-dispatcher"], env, fleet.logs / "api.log", port
        )
    )
    await api.spawn().wait_ready()
    children = _children(api.pid)
    assert len(children) >= 2  # the two workers (and multiprocessing's tracker)
    try:
        assert await api.terminate() == 0

        assert await _refuses_connections(port)
    finally:
        _kill_leftovers(children, port)  # only matters when the test fails: no orphans


def _kill_leftovers(pids: list[int], port: int) -> None:
    """SIGKILL the workers still alive, recognised by their port (a pid may have been reused)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"CALLBACKHUB_PORT={port}".encode() in environ:
                os.kill(pid, signal.SIGKILL)
