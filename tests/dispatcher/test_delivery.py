"""What the partner receives, and how delivery shares out: one partner's trouble does not hold up
another, the per-callback limit holds, and deleting stops delivery."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from service.core.runtime import package_version
from tests.support.api import (
    FINAL,
    create_partner,
    emit,
    log_page,
    notification,
    payload,
    put_callback,
    settled,
)
from tests.support.fixtures import StartDispatcher
from tests.support.polling import eventually
from tests.support.receiver import Receiver, hang, status
from tests.support.scripted_dns import ScriptedDns
from tests.support.tokens import auth

# What the partner receives.


async def test_the_body_is_the_exact_bytes_emitted(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    process = uuid.uuid4()
    raw = (
        '{\n  "statusDescription" :"Approved \\u00e9t\\u00e9 \\ud83d\\ude00 caf\u00e9",'
        f'   "changedAt":"2024-05-01T12:00:00.123456-03:30", "processUniqueId"  :  "{process}",'
        '\t"statusId":7 ,"previousStatusId":-0\n}\n'
    ).encode()

    notification_id = await emit(client, partner, 1, raw)

    [received] = await receiver.wait_for(1)
    assert received.body == raw
    assert received.headers["webhook-id"] == notification_id


async def test_a_cookie_a_partner_sets_is_never_sent_back(
    client: TestClient, partner: str, receiver: Receiver, dispatch: StartDispatcher
) -> None:
    # By a host name: a cookie jar keeps no cookies for a bare IP address.
    port = receiver.url.split(":")[2].split("/")[0]
    await put_callback(client, partner, 1, f"http://partner.test:{port}/hook")
    await put_callback(client, partner, 2, f"http://partner.test:{port}/other")
    receiver.responses = [status(200, headers={"Set-Cookie": "session=partner-secret; Path=/"})]
    await dispatch(ScriptedDns({"partner.test": [["127.0.0.1"]]}))

    for notification_type in (1, 2, 1):
        await emit(client, partner, notification_type, payload(notification_type))
        await receiver.wait_for(len(receiver.received) + 1)

    assert all("Cookie" not in r.headers for r in receiver.received)


async def test_the_request_carries_the_documented_headers(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    secret = (await put_callback(client, partner, 3, receiver.url))["signingSecret"]
    sent = payload(3)

    notification_id = await emit(client, partner, 3, sent)

    [received] = await receiver.wait_for(1)
    headers = received.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"callbackhub/{package_version()}"
    assert re.fullmatch(r"callbackhub/\d+\.\d+\.\d+.*", headers["User-Agent"])
    assert headers["notification-type-id"] == "3"
    assert headers["webhook-id"] == notification_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-sequence"] == "1"
    assert Webhook(secret).verify(received.body, headers) == sent


async def test_every_attempt_is_signed_anew_with_the_same_webhook_id(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    secret = (await put_callback(client, partner, 2, receiver.url))["signingSecret"]
    receiver.responses = [status(500), status(502)]

    notification_id = await emit(client, partner, 2, payload(2))

    received = await receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in received} == {notification_id}
    for request in received:
        Webhook(secret).verify(request.body, request.headers)
    await settled(client, partner, notification_id, "delivered")


async def test_the_sequence_counts_per_subject(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    first, second = uuid.uuid4(), uuid.uuid4()

    for process in (first, second, first, first, second):
        await emit(client, partner, 2, payload(2, process))

    received = await receiver.wait_for(5)
    by_subject: dict[str, list[int]] = {}
    for request in sorted(received, key=lambda r: int(r.headers["webhook-sequence"])):
        process = json.loads(request.body)["processUniqueId"]
        by_subject.setdefault(process, []).append(int(request.headers["webhook-sequence"]))
    assert by_subject == {str(first): [1, 2, 3], str(second): [1, 2]}


# One partner's trouble does not hold up another.


@pytest.mark.parametrize("settings", [{"delivery_timeout": 20.0}], indirect=True)
async def test_a_partner_that_never_answers_does_not_delay_another(
    client_with_dispatcher: TestClient,
) -> None:
    client = client_with_dispatcher
    stuck, healthy = Receiver(default=hang()), Receiver()
    await stuck.start()
    await healthy.start()
    try:
        slow_partner = await create_partner(client, "Slow")
        fast_partner = await create_partner(client, "Fast")
        await put_callback(client, slow_partner, 2, stuck.url)
        await put_callback(client, fast_partner, 2, healthy.url)
        slow = [await emit(client, slow_partner, 2, payload(2)) for _ in range(30)]
        await stuck.wait_for(8)  # the per-callback limit of hanging requests is in flight

        fast = [await emit(client, fast_partner, 2, payload(2)) for _ in range(10)]

        await healthy.wait_for(10)
        for notification_id in fast:
            await settled(client, fast_partner, notification_id, "delivered")
        # Causal, not timed: none of the slow partner's attempts has ended yet (each ends only
        # with the 20 s timeout), yet every one of the fast partner's is delivered. The slow
        # callback's lane holds more claimed ahead (up to 4 x 8), ready for the next free slot.
        page = await log_page(client, slow_partner, limit=100)
        statuses = Counter((item["status"], item["attempts"]) for item in page["items"])
        assert set(statuses) <= {("delivering", 1), ("queued", 0)}
        assert 8 <= statuses[("delivering", 1)] <= 32
        detail = await notification(client, slow_partner, slow[0])
        assert detail["attemptLog"] == []
        assert len(stuck.received) == 8
    finally:
        await stuck.stop()
        await healthy.stop()


class CountingReceiver(Receiver):
    """Holds every request until released, and remembers the most it held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most = 0
        self.answered = 0
        self.gate = asyncio.Event()
        self.default = self._held

    async def _held(self, request: web.Request) -> web.StreamResponse:
        gate = self.gate
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await gate.wait()
        finally:
            self.in_flight -= 1
        self.answered += 1
        return web.Response(text="ok")

    def release(self) -> None:
        """Answer the requests held now; later ones wait for the next release."""
        gate, self.gate = self.gate, asyncio.Event()
        gate.set()


@pytest.mark.parametrize("settings", [{"max_per_callback": 2}], indirect=True)
async def test_at_most_max_per_callback_requests_at_once(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    held = CountingReceiver()
    await held.start()
    try:
        partner = await create_partner(client)
        other = await create_partner(client, "Other")
        await put_callback(client, partner, 2, held.url)
        await put_callback(client, other, 2, receiver.url)
        ids = [await emit(client, partner, 2, payload(2)) for _ in range(9)]

        while held.answered < len(ids):
            expected = min(2, len(ids) - held.answered)
            await eventually(_reading(lambda: held.in_flight), lambda n, e=expected: n == e)
            # A barrier: another callback's notification is claimed and delivered, so the claim
            # loop has run while these were held; it still did not start one more.
            marker = await emit(client, other, 2, payload(2))
            await settled(client, other, marker, "delivered")
            assert held.in_flight == expected
            answered = held.answered
            held.release()
            await eventually(
                _reading(lambda: held.answered), lambda n, a=answered, e=expected: n == a + e
            )
        for notification_id in ids:
            await settled(client, partner, notification_id, "delivered")
        assert held.most == 2
        assert len(held.received) == len(ids)
    finally:
        held.release()
        await held.stop()


def _reading(read: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    """A probe for ``eventually`` that reads a counter."""

    async def probe() -> int:
        return read()

    return probe


# Deleting stops delivery.


@pytest.mark.parametrize("settings", [{"retry_schedule": (1.0,) * 20}], indirect=True)
async def test_deleting_a_callback_cancels_its_pending_notifications(
    client_with_dispatcher: TestClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_with_dispatcher
    failing = Receiver(default=status(500))
    await failing.start()
    try:
        partner = await create_partner(client)
        await put_callback(client, partner, 1, failing.url)
        await put_callback(client, partner, 2, receiver.url)
        ids = [await emit(client, partner, 1, payload(1)) for _ in range(5)]
        await failing.wait_for(5)

        response = await client.delete(
            f"/partners/{partner}/callbacks/1", headers=auth("callbacks:write")
        )
        assert response.status == 204
        seen = len(failing.received)

        for notification_id in ids:
            detail = await notification(client, partner, notification_id)
            assert detail["status"] == "cancelled"
            assert detail["nextAttemptAt"] is None
        # A barrier past the moment the cancelled ones would have been retried: a notification
        # to the other callback that needs one retry itself.
        receiver.responses = [status(500)]
        marker = await emit(client, partner, 2, payload(2))
        await settled(client, partner, marker, "delivered")
        assert len(failing.received) == seen
        details = [await notification(client, partner, n) for n in ids]
        assert [(d["status"], d["attempts"]) for d in details] == [("cancelled", 1)] * 5
        assert {d["failureReason"] for d in details} == {"callback_deleted"}
        assert "Deadlock" not in caplog.text  # the delete takes locks in the dispatcher's order
    finally:
        await failing.stop()


@pytest.mark.parametrize("settings", [{"retry_schedule": (1.0,) * 20}], indirect=True)
async def test_deleting_a_partner_cancels_its_pending_notifications(
    client_with_dispatcher: TestClient,
    receiver: Receiver,
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_with_dispatcher
    failing = Receiver(default=status(500))
    await failing.start()
    try:
        partner = await create_partner(client)
        other = await create_partner(client, "Other")
        await put_callback(client, partner, 1, failing.url)
        await put_callback(client, partner, 2, failing.url)
        await put_callback(client, other, 2, receiver.url)
        for notification_type in (1, 2, 1, 2):
            await emit(client, partner, notification_type, payload(notification_type))
        await failing.wait_for(4)

        response = await client.delete(f"/partners/{partner}", headers=auth())
        assert response.status == 204
        seen = len(failing.received)

        receiver.responses = [status(500)]
        marker = await emit(client, other, 2, payload(2))
        await settled(client, other, marker, "delivered")
        assert len(failing.received) == seen
        assert (await client.get(f"/partners/{partner}", headers=auth())).status == 404
        connection = await asyncpg.connect(database)
        try:
            rows = await connection.fetch(
                "SELECT status, failure_reason FROM deliveries WHERE partner_id = $1",
                uuid.UUID(partner),
            )
        finally:
            await connection.close()
        assert [tuple(row) for row in rows] == [("cancelled", "partner_deleted")] * 4
        assert "Deadlock" not in caplog.text
    finally:
        await failing.stop()


async def test_a_delivered_notification_is_final(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await eventually(
        lambda: notification(client, partner, notification_id),
        lambda d: d["status"] in FINAL,
    )
    assert detail["status"] == "delivered"
    assert detail["attempts"] == 1
    assert detail["deliveredAt"] is not None
    assert detail["nextAttemptAt"] is None
    assert detail["failureReason"] is None
    assert detail["payload"] == (await _payload_of(receiver))


async def _payload_of(receiver: Receiver) -> object:
    [received] = await receiver.wait_for(1)
    return json.loads(received.body)


# A transient database error while recording outcomes.


async def _waiting_on_a_lock(connection: asyncpg.Connection, application: str) -> bool:
    """Whether a backend other than ours and ``application`` waits on a row lock."""
    waiting = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        " AND application_name <> $1",
        application,
    )
    return bool(waiting)


async def test_a_deadlock_while_recording_outcomes_is_retried(
    client_with_dispatcher: TestClient, database: str
) -> None:
    """PostgreSQL breaks a deadlock by aborting one transaction; when that is the dispatcher's,
    it records the same outcomes again instead of silently never recording anything more."""
    client = client_with_dispatcher
    held = CountingReceiver()
    await held.start()
    blocker = await asyncpg.connect(database, server_settings={"application_name": "blocker"})
    try:
        partner = await create_partner(client)
        await put_callback(client, partner, 1, held.url)  # ordered: the dispatcher locks subjects
        notification_id = await emit(client, partner, 1, payload(1))
        await eventually(_reading(lambda: held.in_flight), lambda n: n == 1)
        # The test's transaction is the one that waits longer before checking for a deadlock,
        # so PostgreSQL picks the dispatcher's transaction to abort.
        await blocker.execute("SET deadlock_timeout = '60s'")
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "SELECT 1 FROM deliveries WHERE notification_id = $1 FOR UPDATE",
            uuid.UUID(notification_id),
        )
        held.release()  # the dispatcher locks the subject, then waits for the delivery row
        watcher = await asyncpg.connect(database, server_settings={"application_name": "watch"})
        try:
            await eventually(lambda: _waiting_on_a_lock(watcher, "watch"), bool)
        finally:
            await watcher.close()
        await blocker.execute(
            "SELECT 1 FROM subject_sequences WHERE callback_id IN"
            " (SELECT id FROM callbacks WHERE partner_id = $1) FOR UPDATE",
            uuid.UUID(partner),
        )  # waits for the dispatcher's lock until PostgreSQL aborts the dispatcher's side
        await transaction.rollback()

        detail = await settled(client, partner, notification_id, "delivered")
        assert detail["attempts"] == 1
        assert [a["responseStatus"] for a in detail["attemptLog"]] == [200]
    finally:
        await blocker.close()
        await held.stop()
