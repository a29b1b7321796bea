"""The circuit breaker and the Retry-After pause against real receivers: a partner that refuses
for 20 s is not hammered, gets its backlog within seconds of coming back, and another partner
never notices; a Retry-After pauses the whole callback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, emit, get_callback, log_page, payload, put_callback
from tests.support.operator import register_operator_webhook, wait_for_event
from tests.support.polling import eventually
from tests.support.receiver import Receiver, status

REFUSING_FOR = 20.0
BACKLOG = 500
FAILURES, IN_FLIGHT = 5, 8  # CALLBACKHUB_CIRCUIT_FAILURES and the default maxInFlight
PROBE_FIRST, PROBE_LONGEST = 1.0, 4.0


def probes_within(seconds: float) -> int:
    """How many probes the schedule allows in ``seconds`` after the circuit opens."""
    count, at, wait = 0, 0.0, PROBE_FIRST
    while at + wait <= seconds:
        at, count, wait = at + wait, count + 1, min(2 * wait, PROBE_LONGEST)
    return count


class Refusing:
    """A partner that answers 503 while ``refusing``, counting the requests it refused."""

    def __init__(self) -> None:
        self.refusing = False
        self.refused: list[float] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.refusing:
            self.refused.append(time.monotonic())
            return web.Response(status=503, text="down for maintenance")
        return web.Response(text="ok")


@pytest.fixture
async def other() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def emit_many(client: TestClient, partner: str, count: int) -> set[str]:
    ids: set[str] = set()
    for start in range(0, count, 25):
        batch = [emit(client, partner, 2, payload(2)) for _ in range(min(25, count - start))]
        ids |= set(await asyncio.gather(*batch))
    return ids


async def every_attempt_count(client: TestClient, partner: str) -> list[int]:
    counts: list[int] = []
    for offset in range(0, BACKLOG, 100):
        page = await log_page(client, partner, offset=offset, limit=100)
        counts += [item["attempts"] for item in page["items"]]
    return counts


def metric(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


@pytest.mark.parametrize(
    "settings",
    [
        {
            "circuit_probe_interval": PROBE_FIRST,
            "circuit_probe_max_interval": PROBE_LONGEST,
            "retry_schedule": (0.2,) * 10,
        }
    ],
    indirect=True,
)
async def test_a_refusing_partner_is_probed_not_hammered_and_others_never_wait(
    client_with_dispatcher: TestClient, receiver: Receiver, other: Receiver
) -> None:
    client = client_with_dispatcher
    inbox = await Receiver().start()
    try:
        secret = await register_operator_webhook(client, inbox.url)
        refusing = Refusing()
        receiver.default = refusing
        broken, healthy = await create_partner(client), await create_partner(client)
        await put_callback(client, broken, 2, receiver.url)
        await put_callback(client, healthy, 2, other.url)

        refusing.refusing = True
        window_start = time.monotonic()
        backlog = await emit_many(client, broken, BACKLOG)

        # Meanwhile the other partner's notifications go straight through.
        latencies: list[float] = []
        health: dict[str, Any] = {}
        while time.monotonic() - window_start < REFUSING_FOR:
            sent_at = time.monotonic()
            await emit(client, healthy, 2, payload(2))
            await other.wait_for(len(latencies) + 1)
            latencies.append(other.received[-1].at - sent_at)
            health = (await get_callback(client, broken, 2))["health"]
            await asyncio.sleep(0.2)  # the other partner's pace: 5 notifications a second
        metrics = await (await client.get("/metrics")).text()
        open_circuits = metric(metrics, "callbackhub_circuits_open")
        refusing.refusing = False
        back_at = time.monotonic()

        # Every notification of the backlog answered 200 after the partner came back.
        await eventually(
            lambda: _answered_since(receiver, back_at), lambda ids: ids >= backlog, timeout=10.0
        )
        drained_in = time.monotonic() - back_at

        refused = len(refusing.refused)
        print(
            f"refused {refused} requests in {REFUSING_FOR:.0f} s (bound "
            f"{FAILURES + IN_FLIGHT + probes_within(REFUSING_FOR)}); backlog of {BACKLOG} "
            f"drained {drained_in:.2f} s after the return; other partner: "
            f"{len(latencies)} notifications, max {max(latencies) * 1000:.1f} ms"
        )
        assert refused <= FAILURES + IN_FLIGHT + probes_within(REFUSING_FOR)
        assert drained_in <= 10.0
        assert max(await every_attempt_count(client, broken)) <= 2
        assert len(latencies) >= 50 and max(latencies) < 1.0, latencies
        assert health["state"] in ("open", "probing")
        assert health["consecutiveFailures"] >= FAILURES
        assert health["failingSince"] is not None and health["nextProbeAt"] is not None
        assert open_circuits == 1.0
        opened = await wait_for_event(inbox, secret, "callback.circuit_opened")
        assert opened["data"]["lastError"] == "HTTP 503"
        await wait_for_event(inbox, secret, "callback.circuit_closed")
        after = (await get_callback(client, broken, 2))["health"]
        assert after == {
            "state": "healthy",
            "consecutiveFailures": 0,
            "failingSince": None,
            "nextProbeAt": None,
            "pausedUntil": None,
        }
    finally:
        await inbox.stop()


async def _answered_since(receiver: Receiver, since: float) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.received if r.at >= since}


async def test_retry_after_pauses_the_whole_callback(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url, maxInFlight=1)
    receiver.responses = [status(429, headers={"Retry-After": "5"})]

    for _ in range(3):
        await emit(client, partner, 2, payload(2))
    await receiver.wait_for(1)
    paused = await eventually(
        lambda: get_callback(client, partner, 2), lambda c: c["health"]["pausedUntil"] is not None
    )
    assert paused["health"]["state"] == "healthy"
    await receiver.wait_for(4, timeout=15.0)

    first, second = receiver.received[:2]
    gap = second.at - first.at
    assert 5.0 <= gap < 7.0, gap  # the pause, plus at most a few polls
