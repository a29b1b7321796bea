"""Group commit: concurrent echoes share transactions, and every caller hears only after the
commit that holds its row, whether or not other callers in the batch are still waiting."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.core.audit import SYSTEM
from service.core.callbacks import upsert_callback
from service.core.database import Pool, create_pool
from service.core.ids import uuid7, uuid7_batch
from service.core.notifications import NewNotification, NotificationWriter
from service.core.partners import create_partner
from service.core.schemas import CallbackUpdate
from service.core.settings import Settings
from tests.support.api import payload
from tests.support.keys import suite_keyring


@pytest.fixture
async def pool(database: str, settings: Settings) -> AsyncIterator[Pool]:
    opened = await create_pool(database, settings)
    yield opened
    await opened.close()


@pytest.fixture
async def ingest(pool: Pool) -> AsyncIterator[NotificationWriter]:
    started = NotificationWriter(pool, idempotency_ttl=3600, writers=2)
    yield started
    await started.close()


async def _partner_with_callbacks(pool: Pool) -> uuid.UUID:
    partner = await create_partner(pool, "Batch Brokers", None, SYSTEM)
    for notification_type in (1, 2):
        update = CallbackUpdate(url="https://broker.example/hook")
        await upsert_callback(
            pool, suite_keyring(), partner.partner_unique_id, notification_type, update, SYSTEM, 0
        )
    return partner.partner_unique_id


def _new_notification(
    partner: uuid.UUID, notification_type: int, subject: uuid.UUID
) -> NewNotification:
    body = json.dumps(payload(notification_type, subject)).encode()
    return NewNotification(partner, notification_type, subject, body)


async def _stored(pool: Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT n.id, n.xmin::text AS xmin, d.ordered, d.sequence, d.subject,
                  d.next_attempt_at IS NOT NULL AS ready
           FROM notifications n JOIN deliveries d ON d.notification_id = n.id"""
    )


async def test_concurrent_echoes_share_transactions_and_all_are_committed(
    pool: Pool, ingest: NotificationWriter
) -> None:
    partner = await _partner_with_callbacks(pool)
    emissions = [_new_notification(partner, 2, uuid.uuid4()) for _ in range(60)]

    ids = [a.notification_id for a in await asyncio.gather(*map(ingest.accept, emissions))]

    rows = {row["id"]: row for row in await _stored(pool)}
    assert set(ids) == set(rows), "every answered id is a committed notification"
    assert len({row["xmin"] for row in rows.values()}) < len(ids), "no shared transaction"
    assert all(row["ready"] and not row["ordered"] for row in rows.values())


async def test_ordered_and_unordered_in_one_batch_keep_their_order_rules(
    pool: Pool, ingest: NotificationWriter
) -> None:
    partner, subject = await _partner_with_callbacks(pool), uuid.uuid4()
    head = (await ingest.accept(_new_notification(partner, 1, subject))).notification_id
    emissions = [_new_notification(partner, 1, subject) for _ in range(3)]
    emissions += [_new_notification(partner, 2, subject) for _ in range(2)]

    ids = [head, *[a.notification_id for a in await asyncio.gather(*map(ingest.accept, emissions))]]

    rows = {row["id"]: row for row in await _stored(pool)}
    ordered = sorted((rows[i] for i in ids[:4]), key=lambda row: row["sequence"])
    assert ordered[0]["id"] == head
    assert [row["sequence"] for row in ordered] == [1, 2, 3, 4]
    assert [row["ready"] for row in ordered] == [True, False, False, False], (
        "only the head may be sent, also when it was committed by an earlier batch"
    )
    assert all(rows[i]["ready"] for i in ids[4:]), "unordered ones never wait"


async def test_a_caller_that_stops_waiting_does_not_disturb_its_batch(
    pool: Pool, ingest: NotificationWriter
) -> None:
    partner = await _partner_with_callbacks(pool)
    leaving = asyncio.create_task(ingest.accept(_new_notification(partner, 2, uuid.uuid4())))
    staying = [asyncio.create_task(ingest.accept(_new_notification(partner, 2, uuid.uuid4())))]
    await asyncio.sleep(0)  # both are queued before the writers run
    leaving.cancel()

    ids = [accepted.notification_id for accepted in await asyncio.gather(*staying)]

    with pytest.raises(asyncio.CancelledError):
        await leaving
    await ingest.close()  # everything queued is written
    rows = await _stored(pool)
    assert set(ids) <= {row["id"] for row in rows}
    assert len(rows) == 2, "the abandoned notification is stored all the same"


def test_notification_ids_are_version_7_and_ordered_by_time() -> None:
    """Time-ordered ids keep new rows at the end of the id indexes (service/ids.py)."""
    first = uuid7_batch(1000)
    assert len(set(first)) == 1000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in first)
    assert len({i.int >> 80 for i in first}) == 1  # one millisecond for the batch
    later = uuid7()
    while later.int >> 80 == first[0].int >> 80:  # the next millisecond (a bounded wait)
        later = uuid7()
    assert later > max(first)
