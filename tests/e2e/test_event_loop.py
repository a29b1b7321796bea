"""CALLBACKHUB_EVENT_LOOP: serve and the dispatcher run on uvloop by default, and on the standard
asyncio loop when asked; both deliver a signed notification end to end."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest
import uvloop
from standardwebhooks import Webhook

from service.core.runtime import loop_factory
from tests.support import processes
from tests.support.fleet import Fleet
from tests.support.tokens import bearer, claims, hs256


@pytest.mark.parametrize(("choice", "kind"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_loop_factory_makes_the_chosen_loop(choice: str, kind: type | None) -> None:
    loop = loop_factory(choice)()
    try:
        if kind is None:
            assert not isinstance(loop, uvloop.Loop)
            assert isinstance(loop, asyncio.BaseEventLoop)
        else:
            assert isinstance(loop, kind)
    finally:
        loop.close()


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
async def test_serve_delivers_on_either_loop(
    choice: str, database: str, tmp_path: Path, fleet: Fleet
) -> None:
    receiver = await fleet.receiver()
    env = processes.callbackhub_env(database, tmp_path / "data", event_loop=choice)
    server = await processes.start(fleet.add(processes.serve(choice, env, fleet.logs)))
    admin = bearer(hs256(claims("partners:admin")))
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.post("/partners", json={"name": "Loop Ltd"}, headers=admin) as response:
            assert response.status == 201, await response.text()
            partner = (await response.json())["partnerUniqueId"]
        async with http.put(
            f"/partners/{partner}/callbacks/1", json={"url": receiver.url}, headers=admin
        ) as response:
            assert response.status == 201, await response.text()
            secret = (await response.json())["signingSecret"]
        body = {
            "processUniqueId": str(uuid.uuid4()),
            "statusId": 2,
            "statusDescription": "Submitted",
            "changedAt": "2026-11-27T10:00:00Z",
        }
        async with http.post(
            f"/partners/{partner}/callbacks/1/echo",
            json=body,
            headers=bearer(hs256(claims("notifications:emit"))),
        ) as response:
            assert response.status == 202, await response.text()
            notification_id = (await response.json())["notificationId"]

    [received] = await receiver.wait_for(1)
    assert received.headers["webhook-id"] == notification_id
    Webhook(secret).verify(received.body, received.headers)
    assert await server.terminate() == 0
