"""store_notifications_v1 (0003, renamed by 0006), called through the store_notifications
query: the outcomes of a mixed batch, Idempotency-Keys, per-subject sequences, readiness of
ordered subjects, and that a refused item stores nothing."""

from __future__ import annotations

import uuid

import asyncpg

from tests.db.rows import (
    DOCUMENT,
    NOTES,
    WORKFLOW,
    Item,
    add_callback,
    add_partner,
    digest,
    store,
    store_one,
)


async def stored_ids(connection: asyncpg.Connection, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await connection.fetch(
        "SELECT n.id FROM notifications n JOIN deliveries d ON d.notification_id = n.id"
        " WHERE n.id = ANY ($1::uuid[])",
        ids,
    )
    return {row["id"] for row in rows}


async def test_a_mixed_batch_gets_an_outcome_per_item_and_stores_only_the_accepted(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    await add_callback(connection, partner, WORKFLOW)
    await add_callback(connection, partner, DOCUMENT, enabled=False)
    without_callback = await add_partner(connection, "No Callbacks Ltd")
    subject = uuid.uuid4()
    first = await store_one(
        connection, Item(partner, subject, key="order-1", hash=digest("body-1"))
    )

    outcomes = await store(
        connection,
        [
            Item(partner, subject),
            Item(uuid.uuid4(), subject),  # nobody registered this partner
            Item(without_callback, subject),
            Item(partner, subject, NOTES),  # no callback for this type
            Item(partner, subject, DOCUMENT),  # its callback is disabled
            Item(partner, subject, key="order-1", hash=digest("body-1")),
            Item(partner, subject, key="order-1", hash=digest("another body")),
            Item(partner, subject, key="order-2", hash=digest("body-2")),
        ],
    )

    assert [o.outcome for o in outcomes] == [
        "stored",
        "partner_not_found",
        "callback_not_found",
        "callback_not_found",
        "callback_disabled",
        "repeat",
        "key_reused",
        "stored",
    ]
    stored = [o for o in outcomes if o.outcome == "stored"]
    assert all(o.stored_id == o.sent_id for o in stored)
    assert outcomes[5].stored_id == first  # a repeat answers with the first id under the key
    refused = [o.sent_id for o in outcomes if o.outcome != "stored"]
    assert await stored_ids(connection, refused) == set()
    assert await stored_ids(connection, [o.sent_id for o in stored]) == {o.sent_id for o in stored}
    assert await connection.fetchval("SELECT count(*) FROM notifications") == 3
    # The key that was reused with another body still belongs to the first request.
    held = await connection.fetch(
        "SELECT key, request_hash, notification_id FROM idempotency_keys WHERE partner_id = $1"
        " ORDER BY key",
        partner,
    )
    assert [tuple(row) for row in held] == [
        ("order-1", digest("body-1"), first),
        ("order-2", digest("body-2"), outcomes[7].sent_id),
    ]


async def test_a_key_older_than_its_time_to_live_is_taken_by_the_new_request(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    await add_callback(connection, partner)
    subject = uuid.uuid4()
    await store_one(connection, Item(partner, subject, key="k", hash=digest("old")))
    await connection.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $1)"
        " WHERE partner_id = $2",
        120.0,
        partner,
    )

    [outcome] = await store(
        connection, [Item(partner, subject, key="k", hash=digest("new"))], key_ttl=60.0
    )

    assert outcome.outcome == "stored"
    held = await connection.fetchrow(
        "SELECT request_hash, notification_id FROM idempotency_keys WHERE partner_id = $1",
        partner,
    )
    assert held is not None
    assert tuple(held) == (digest("new"), outcome.sent_id)


async def test_sequences_count_per_callback_and_subject_in_arrival_order(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    await add_callback(connection, partner, WORKFLOW)
    await add_callback(connection, partner, NOTES)
    one, two = uuid.uuid4(), uuid.uuid4()
    keyed = await store_one(connection, Item(partner, one, key="k", hash=digest("b")))

    batch = [
        Item(partner, one),
        Item(partner, two),
        Item(partner, one, key="k", hash=digest("b")),  # a repeat takes no number
        Item(partner, one),
        Item(partner, one, NOTES),  # another callback: its own count
        Item(partner, two),
        Item(partner, one, key="k", hash=digest("other")),  # refused: takes no number
        Item(partner, one),
    ]
    outcomes = await store(connection, batch)
    later = await store_one(connection, Item(partner, one))

    numbered = {
        row["notification_id"]: row["sequence"]
        for row in await connection.fetch("SELECT notification_id, sequence FROM deliveries")
    }
    ids = [o.sent_id for o in outcomes]
    assert numbered == {
        keyed: 1,
        ids[0]: 2,
        ids[1]: 1,
        ids[3]: 3,
        ids[4]: 1,
        ids[5]: 2,
        ids[7]: 4,
        later: 5,
    }


async def test_an_ordered_subject_has_only_its_first_pending_notification_due(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    await add_callback(connection, partner, WORKFLOW, ordered=True)
    await add_callback(connection, partner, NOTES, ordered=False)
    earlier, fresh = uuid.uuid4(), uuid.uuid4()
    head = await store_one(connection, Item(partner, earlier))

    outcomes = await store(
        connection,
        [
            Item(partner, earlier),  # behind the head stored by the earlier call
            Item(partner, fresh),  # first of its subject: due
            Item(partner, fresh),  # behind the one just before it in this batch
            Item(partner, fresh, NOTES),  # unordered callback: due
            Item(partner, fresh, NOTES),
        ],
    )

    assert all(o.outcome == "stored" for o in outcomes)
    rows = await connection.fetch(
        "SELECT notification_id, ordered, status, next_attempt_at IS NOT NULL AS due"
        " FROM deliveries"
    )
    state = {row["notification_id"]: (row["ordered"], row["status"], row["due"]) for row in rows}
    ids = [o.sent_id for o in outcomes]
    assert state == {
        head: (True, "queued", True),
        ids[0]: (True, "queued", False),
        ids[1]: (True, "queued", True),
        ids[2]: (True, "queued", False),
        ids[3]: (False, "queued", True),
        ids[4]: (False, "queued", True),
    }


async def test_an_ordered_notification_is_due_once_nothing_earlier_is_pending(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    await add_callback(connection, partner, ordered=True)
    subject = uuid.uuid4()
    head = await store_one(connection, Item(partner, subject))
    await connection.execute(
        "UPDATE deliveries SET status = 'delivered', next_attempt_at = NULL"
        " WHERE notification_id = $1",
        head,
    )

    successor = await store_one(connection, Item(partner, subject))

    due = await connection.fetchval(
        "SELECT next_attempt_at IS NOT NULL FROM deliveries WHERE notification_id = $1",
        successor,
    )
    assert due is True
