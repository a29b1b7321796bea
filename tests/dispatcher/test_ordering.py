"""Ordered delivery per subject (issue 6): a partner never sees a process's later state before
its earlier one, while different subjects are delivered in parallel."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.api import (
    create_partner,
    emit,
    get_callback,
    log_page,
    notification,
    payload,
    put_callback,
    settled,
)
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Responder, status
from tests.support.tokens import auth


class FlakyPartner(Receiver):
    """Fails a share of requests at random and answers after a random 0-50 ms; records the
    order in which it accepted notifications, per subject, and what it held at once."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        super().__init__()
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.accepted: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.in_flight: dict[str, int] = defaultdict(int)  # subject -> requests held now
        self.most_subjects_at_once = 0
        self.most_of_one_subject_at_once = 0
        self.default = self._answer

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        subject = json.loads(await request.read())["processUniqueId"]
        self.in_flight[subject] += 1
        busy = [s for s, n in self.in_flight.items() if n > 0]
        self.most_subjects_at_once = max(self.most_subjects_at_once, len(busy))
        self.most_of_one_subject_at_once = max(
            self.most_of_one_subject_at_once, self.in_flight[subject]
        )
        try:
            fail = self.random.random() < self.failure_rate
            await asyncio.sleep(self.random.uniform(0, 0.05))  # the partner's latency
        finally:
            self.in_flight[subject] -= 1
        if fail:
            return web.Response(status=500, text="flaky")
        sequence = int(request.headers["webhook-sequence"])
        self.accepted[subject].append((request.headers["webhook-id"], sequence))
        return web.Response(text="ok")

    def first_successes(self, subject: str) -> list[tuple[str, int]]:
        seen: set[str] = set()
        firsts = []
        for notification_id, sequence in self.accepted[subject]:
            if notification_id not in seen:
                seen.add(notification_id)
                firsts.append((notification_id, sequence))
        return firsts


SUBJECTS, PER_SUBJECT = 50, 30


@pytest.mark.parametrize(
    "settings",
    # 21 attempts: at a 30 % failure rate none runs out (0.3 ** 21). 32 requests per callback
    # instead of 8 keeps the test near 10 s on two cores; a long lease keeps a busy event loop
    # from letting a lease expire (a second copy in flight is allowed, just not measured here).
    [{"retry_schedule": (0.05,) * 20, "lease_margin": 60.0, "max_per_callback": 32}],
    indirect=True,
)
async def test_each_subject_is_delivered_in_acceptance_order_and_subjects_in_parallel(
    client_with_dispatcher: TestClient,
) -> None:
    client = client_with_dispatcher
    partner_server = await FlakyPartner(failure_rate=0.3, seed=6).start()
    try:
        partner = await create_partner(client)
        callback = await put_callback(client, partner, 1, partner_server.url)
        assert callback["orderedDelivery"] is True
        subjects = [uuid.uuid4() for _ in range(SUBJECTS)]
        accepted: dict[str, list[str]] = {str(s): [] for s in subjects}
        gate = asyncio.Semaphore(50)

        async def emit_subject(subject: uuid.UUID) -> None:
            for step in range(PER_SUBJECT):
                body = payload(1, subject, statusId=step, previousStatusId=step - 1)
                async with gate:
                    notification_id = await emit(client, partner, 1, body)
                accepted[str(subject)].append(notification_id)  # in the order of the 202s

        await asyncio.gather(*(emit_subject(subject) for subject in subjects))

        total = SUBJECTS * PER_SUBJECT
        await eventually(
            lambda: log_page(client, partner, status="delivered", limit=1),
            lambda page: page["total"] == total,
            timeout=90,
            interval=0.5,
        )
        for subject, in_order in accepted.items():
            firsts = partner_server.first_successes(subject)
            assert [notification_id for notification_id, _ in firsts] == in_order, subject
            assert [sequence for _, sequence in firsts] == list(range(1, PER_SUBJECT + 1))
        # The parallelism is measured, not assumed: several subjects were in flight at once,
        # but never two notifications of one subject.
        assert partner_server.most_subjects_at_once > 1
        assert partner_server.most_of_one_subject_at_once == 1
        assert len(partner_server.received) > total  # failures really happened, and retries
    finally:
        await partner_server.stop()


# Waiting, and what unblocks a subject.


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
async def test_a_waiting_notification_is_queued_and_blocked_by_the_earlier_one(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.responses = [status(500)]  # the first attempt fails; its retry is 30 s away
    process, other = uuid.uuid4(), uuid.uuid4()

    first = await emit(client, partner, 1, payload(1, process))
    await receiver.wait_for(1)
    second = await emit(client, partner, 1, payload(1, process))
    third = await emit(client, partner, 1, payload(1, process))
    unrelated = await emit(client, partner, 1, payload(1, other))

    await settled(client, partner, unrelated, "delivered")  # other subjects are not held up
    head = await notification(client, partner, first)
    assert (head["status"], head["attempts"], head["blockedBy"]) == ("queued", 1, None)
    assert head["nextAttemptAt"] is not None
    for waiting in (second, third):
        detail = await notification(client, partner, waiting)
        assert (detail["status"], detail["attempts"]) == ("queued", 0)
        assert detail["blockedBy"] == first
        assert detail["nextAttemptAt"] is None
    listed = {item["notificationId"]: item for item in (await log_page(client, partner))["items"]}
    assert listed[second]["blockedBy"] == first
    assert listed[unrelated]["blockedBy"] is None
    assert [r.headers["webhook-id"] for r in receiver.received] == [first, unrelated]


@pytest.mark.parametrize("settings", [{"retry_schedule": (0.05, 0.05)}], indirect=True)
async def test_a_notification_that_fails_for_good_unblocks_the_next(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.default = _failing_status(1)  # the first state change always fails
    process = uuid.uuid4()

    first = await emit(client, partner, 1, payload(1, process, statusId=1))
    second = await emit(client, partner, 1, payload(1, process, statusId=2))

    failed = await settled(client, partner, first, "failed")
    await settled(client, partner, second, "delivered")
    assert failed["failureReason"] == "http_error"
    assert failed["attemptLog"][-1]["responseStatus"] == 500
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids.count(first) == 3
    assert ids.index(second) > max(i for i, n in enumerate(ids) if n == first)


def _failing_status(status_id: int) -> Responder:
    """Answers 500 to the state change with ``status_id``, 200 to the others."""

    async def respond(request: web.Request) -> web.StreamResponse:
        failing = json.loads(await request.read())["statusId"] == status_id
        return web.Response(status=500 if failing else 200)

    return respond


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
@pytest.mark.parametrize(
    ("notification_type", "update"),
    [(2, {}), (1, {"orderedDelivery": False})],
    ids=["notes-by-default", "state-changes-turned-off"],
)
async def test_unordered_callbacks_are_not_blocked(
    client_with_dispatcher: TestClient,
    receiver: Receiver,
    notification_type: int,
    update: dict,
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    callback = await put_callback(client, partner, notification_type, receiver.url, **update)
    assert callback["orderedDelivery"] is False
    receiver.responses = [status(500)]
    process = uuid.uuid4()

    first = await emit(client, partner, notification_type, payload(notification_type, process))
    await eventually(
        lambda: notification(client, partner, first),
        lambda d: (d["status"], d["attempts"]) == ("queued", 1),  # its retry is 30 s away
    )
    second = await emit(client, partner, notification_type, payload(notification_type, process))

    later = await settled(client, partner, second, "delivered")
    assert later["blockedBy"] is None
    earlier = await notification(client, partner, first)
    assert (earlier["status"], earlier["attempts"]) == ("queued", 1)


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
async def test_ordered_delivery_can_be_turned_on_for_notes(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url, orderedDelivery=True)
    assert (await get_callback(client, partner, 2))["orderedDelivery"] is True
    # Updating the URL without naming orderedDelivery keeps it.
    assert (await put_callback(client, partner, 2, receiver.url))["orderedDelivery"] is True
    receiver.responses = [status(500)]
    process = uuid.uuid4()

    first = await emit(client, partner, 2, payload(2, process))
    await receiver.wait_for(1)
    second = await emit(client, partner, 2, payload(2, process))

    detail = await eventually(
        lambda: notification(client, partner, second), lambda d: d["blockedBy"] is not None
    )
    assert (detail["status"], detail["blockedBy"]) == ("queued", first)


async def test_the_sequence_is_monotonic_per_subject_and_callback(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    await put_callback(client, partner, 2, receiver.url)
    process = uuid.uuid4()

    for notification_type in (1, 1, 2, 1, 2):
        await emit(client, partner, notification_type, payload(notification_type, process))

    received = await receiver.wait_for(5)
    sequences: dict[str, list[int]] = defaultdict(list)
    for request in received:
        sequences[request.headers["notification-type-id"]].append(
            int(request.headers["webhook-sequence"])
        )
    assert sequences["1"] == [1, 2, 3]  # ordered: in the order received, too
    assert sorted(sequences["2"]) == [1, 2]


# Redelivery is sent on its own.


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
async def test_a_redelivery_does_not_block_later_notifications(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    process = uuid.uuid4()
    first = await emit(client, partner, 1, payload(1, process, statusId=1))
    await settled(client, partner, first, "delivered")
    second = await emit(client, partner, 1, payload(1, process, statusId=2))
    await settled(client, partner, second, "delivered")
    receiver.responses = [status(500)]  # the redelivery fails and waits 30 s for its retry

    response = await client.post(
        f"/partners/{partner}/notifications/{first}/redeliver", headers=auth("deliveries:write")
    )
    assert response.status == 202
    await eventually(
        lambda: notification(client, partner, first),
        lambda d: (d["status"], d["attempts"]) == ("queued", 2),  # its retry is 30 s away
    )
    third = await emit(client, partner, 1, payload(1, process, statusId=3))

    await settled(client, partner, third, "delivered")
    redelivered = await notification(client, partner, first)
    assert (redelivered["status"], redelivered["attempts"]) == ("queued", 2)
    assert (await notification(client, partner, second))["status"] == "delivered"
    headers = [r.headers for r in receiver.received]
    assert [h["webhook-id"] for h in headers] == [first, second, first, third]
    assert [h["webhook-sequence"] for h in headers] == ["1", "2", "1", "3"]


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
async def test_redelivering_a_waiting_head_releases_the_next_one(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    """The head of a subject, waiting for a retry, is redelivered: it leaves the order, so the
    next one must not wait for it (nor stay stuck after it is delivered)."""
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.responses = [status(500)]
    process = uuid.uuid4()
    first = await emit(client, partner, 1, payload(1, process, statusId=1))
    await receiver.wait_for(1)
    second = await emit(client, partner, 1, payload(1, process, statusId=2))
    await eventually(
        lambda: notification(client, partner, first),
        lambda d: (d["status"], d["attempts"]) == ("queued", 1),  # its retry is 30 s away
    )
    assert (await notification(client, partner, second))["blockedBy"] == first

    response = await client.post(
        f"/partners/{partner}/notifications/{first}/redeliver", headers=auth("deliveries:write")
    )
    assert response.status == 202

    await settled(client, partner, first, "delivered")
    await settled(client, partner, second, "delivered")
