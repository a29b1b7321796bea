"""Ordered delivery survives a crash: kill -9 of ``callbackhub serve`` in the middle of
delivering, a restart, and every subject's notifications still reach the partner first in
the order echo accepted them (a redelivered one may repeat, never overtake)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict

import aiohttp
from aiohttp import web

from tests.support import processes
from tests.support.api import create_partner, put_callback
from tests.support.fleet import Fleet
from tests.support.polling import eventually
from tests.support.receiver import Receiver
from tests.support.tokens import auth

SUBJECTS = 20
PER_SUBJECT = 25


async def slow_ok(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(random.uniform(0.01, 0.15))  # the partner's latency, not a wait
    return web.Response(text="ok")


async def _emit_subject(
    session: aiohttp.ClientSession, url: str, subject: str, accepted: list[str]
) -> None:
    """This subject's notifications one after another, so acceptance order is well defined."""
    for n in range(PER_SUBJECT):
        body = {
            "processUniqueId": subject,
            "statusId": n,
            "statusDescription": f"state {n}",
            "changedAt": "2026-11-27T10:00:00+00:00",
        }
        async with session.post(url, json=body, headers=auth("notifications:emit")) as response:
            assert response.status == 202, await response.text()
            accepted.append((await response.json())["notificationId"])


def _first_receipts(receiver: Receiver) -> list[str]:
    seen: dict[str, None] = {}
    for received in receiver.received:
        seen.setdefault(received.headers["webhook-id"], None)
    return list(seen)


async def test_kill_9_in_the_middle_keeps_the_order(database: str, fleet: Fleet) -> None:
    receiver = await fleet.receiver(Receiver(default=slow_ok))
    # Many requests in flight per callback: without ordering, a subject's notifications would
    # overtake each other here (checked by turning orderedDelivery off).
    env = processes.callbackhub_env(database, fleet.logs / "data", max_per_callback="64")
    server = fleet.add(processes.serve("serve", env, fleet.logs))
    await processes.start(server)
    async with aiohttp.ClientSession(base_url=server.url) as api:
        partner = await create_partner(api, "Ordered")
        callback = await put_callback(api, partner, 1, receiver.url, status=201)
    assert callback["orderedDelivery"] is True

    accepted: dict[str, list[str]] = defaultdict(list)
    url = f"{server.url}/partners/{partner}/callbacks/1/echo"
    async with aiohttp.ClientSession() as session:
        subjects = [str(uuid.uuid4()) for _ in range(SUBJECTS)]
        await asyncio.gather(*(_emit_subject(session, url, s, accepted[s]) for s in subjects))
    total = SUBJECTS * PER_SUBJECT

    async def first_count() -> int:
        return len(_first_receipts(receiver))

    await eventually(first_count, lambda n: n >= total // 3, timeout=60)
    server.kill()
    killed_at = len(_first_receipts(receiver))
    assert killed_at < total, "everything was delivered before the kill"
    await processes.restart(server)
    await eventually(first_count, lambda n: n >= total, timeout=90)

    order = {notification: i for i, notification in enumerate(_first_receipts(receiver))}
    for subject, notifications in accepted.items():
        firsts = sorted(notifications, key=order.__getitem__)
        assert firsts == notifications, f"subject {subject} was delivered out of order"
    assert await server.terminate() == 0
