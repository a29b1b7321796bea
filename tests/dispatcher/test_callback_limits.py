"""A callback's maxInFlight and maxPerSecond hold across dispatcher processes together: one
dispatcher at a time owns a callback's lane, so two dispatchers sharing the database still
send at most ``maxInFlight`` requests at once, and at most ``maxPerSecond`` + 1 in any
one-second window (counted at the receiver)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from bench.loadgen import most_in_any_second
from tests.support.api import create_partner, emit, payload, put_callback, settled
from tests.support.fixtures import StartDispatcher
from tests.support.receiver import Receiver


class ConcurrencyReceiver(Receiver):
    """Answers after ``seconds``, and remembers the most requests it held at once."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.in_flight = 0
        self.most = 0
        self.default = self._slow

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)  # the partner's latency, not a synchronisation
        finally:
            self.in_flight -= 1
        return web.Response(text="ok")


async def test_max_in_flight_holds_across_two_dispatchers(
    client: TestClient, partner: str, dispatch: StartDispatcher
) -> None:
    slow = await ConcurrencyReceiver(0.05).start()
    try:
        created = await put_callback(client, partner, 2, slow.url, maxInFlight=3)
        assert created["maxInFlight"] == 3
        ids = [await emit(client, partner, 2, payload(2)) for _ in range(40)]
        await dispatch()
        await dispatch()  # a second one, as a second process would be

        for notification_id in ids:
            await settled(client, partner, notification_id, "delivered")
        assert slow.most == 3  # reached, never passed, though both dispatchers had work
        assert len(slow.received) == 40
    finally:
        await slow.stop()


async def test_max_per_second_holds_across_two_dispatchers(
    client: TestClient, partner: str, receiver: Receiver, dispatch: StartDispatcher
) -> None:
    await put_callback(client, partner, 2, receiver.url, maxPerSecond=10)
    ids = [await emit(client, partner, 2, payload(2)) for _ in range(25)]
    await dispatch()
    await dispatch()  # a second one, as a second process would be

    for notification_id in ids:
        await settled(client, partner, notification_id, "delivered")
    arrivals = [request.at for request in receiver.received]
    assert len(arrivals) == 25
    assert 9 <= most_in_any_second(arrivals) <= 11  # the limit is reached and held
    assert max(arrivals) - min(arrivals) >= 2.3  # 25 starts, 0.1 s apart


def test_most_in_any_second_counts_a_sliding_window() -> None:  # the bench's count too
    assert most_in_any_second([]) == 0
    assert most_in_any_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert most_in_any_second([0.0, 1.0, 2.0]) == 1


async def test_a_dispatcher_whose_lanes_drain_takes_on_waiting_callbacks_at_once(
    client: TestClient, receiver: Receiver, dispatch: StartDispatcher
) -> None:
    """Room for one lane at a time (1 request in flight): each time a callback's backlog is
    sent the dispatcher takes on the next callback straight away, not at its next poll (a
    minute here), which is what it did while the held deliveries had ruled out the look."""
    partners = [await create_partner(client, f"Broker {n}") for n in range(4)]
    ids = {}
    for partner in partners:
        await put_callback(client, partner, 2, receiver.url)
        ids[partner] = [await emit(client, partner, 2, payload(2)) for _ in range(3)]
    await dispatch(max_in_flight=1, max_per_callback=1, poll_interval=60)

    for partner, notification_ids in ids.items():
        for notification_id in notification_ids:
            await settled(client, partner, notification_id, "delivered")
    assert len(receiver.received) == 12


def empty_claims() -> float:
    return (
        REGISTRY.get_sample_value("callbackhub_dispatcher_claims_total", {"result": "empty"}) or 0
    )


async def test_an_idle_lane_is_not_claimed_for_again_until_work_may_have_come(
    client: TestClient, receiver: Receiver, dispatch: StartDispatcher
) -> None:
    """A callback whose lane found nothing due is not asked for again at every turn of the
    claim loop (every request finished, every write-back), only when work may have come: a
    NOTIFY, the poll (a minute here). It had cost a futile claim, a round trip to PostgreSQL,
    for every delivery another callback got."""
    quiet, busy = await create_partner(client, "Quiet"), await create_partner(client, "Busy")
    for partner in (quiet, busy):
        await put_callback(client, partner, 2, receiver.url, orderedDelivery=False)
    first = await emit(client, quiet, 2, payload(2))
    await dispatch(poll_interval=60)
    await settled(client, quiet, first, "delivered")  # the quiet callback's lane is idle now

    before = empty_claims()
    ids = [await emit(client, busy, 2, payload(2)) for _ in range(30)]
    for notification_id in ids:
        await settled(client, busy, notification_id, "delivered")
    assert empty_claims() - before <= 3  # one futile claim per delivery or more before
