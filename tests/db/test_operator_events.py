"""The SQL side of operational events (0012): they are written by the change's own transaction
(a rollback leaves none), queued only for an enabled webhook subscribed to their type, and
every one is reported for the metrics; and the health a dispatcher reports is written only
where it still owns the callback."""

from __future__ import annotations

import json
import uuid

import asyncpg

from tests.db.rows import (
    HEALTH,
    Attempt,
    Health,
    Item,
    add_callback,
    add_partner,
    callback,
    claim,
    finish,
    store_one,
)


async def add_webhook(connection: asyncpg.Connection, events: list[str] | None = None) -> None:
    await connection.execute(
        "INSERT INTO operator_webhooks (url, event_types, signing_secret)"
        " VALUES ('https://ops.example/events', $1, 'enc1:test')",
        events,
    )


async def queued_events(connection: asyncpg.Connection) -> list[dict]:
    rows = await connection.fetch("SELECT type, body::text FROM operator_events ORDER BY type")
    return [{"type": row["type"], **json.loads(row["body"])} for row in rows]


async def test_a_rolled_back_disable_leaves_no_event(connection: asyncpg.Connection) -> None:
    await add_webhook(connection)
    callback_id = await add_callback(connection, await add_partner(connection))

    transaction = connection.transaction()
    await transaction.start()
    reported = await connection.fetch(
        HEALTH["disable_callbacks"], [callback_id], "disabled_by_user"
    )
    assert "operator_event" in {row["change"] for row in reported}
    assert len(await queued_events(connection)) == 1  # inside: there
    await transaction.rollback()

    assert await queued_events(connection) == []
    assert (await callback(connection, callback_id))["enabled"]


async def test_only_subscribed_types_are_queued_and_every_one_is_reported(
    connection: asyncpg.Connection,
) -> None:
    await add_webhook(connection, ["notification.exhausted"])
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner)
    notification = await store_one(connection, Item(partner, uuid.uuid4()))
    await claim(connection)

    rows = await connection.fetch(HEALTH["disable_callbacks"], [callback_id], "failing")

    reported = sorted(row["reason"] for row in rows if row["change"] == "operator_event")
    assert reported == ["callback.disabled", "notification.exhausted"]
    [event] = await queued_events(connection)
    assert event["type"] == "notification.exhausted"
    assert event["data"]["notificationId"] == str(notification)
    assert event["data"]["failureReason"] == "callback_disabled"
    assert event["data"]["lastAttempt"] is None  # never attempted


async def test_health_is_written_only_by_the_owner(connection: asyncpg.Connection) -> None:
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner)
    notification = await store_one(connection, Item(partner, uuid.uuid4()))
    await claim(connection, worker="worker-a")
    opened = Health(callback_id, 5, probe_in=30.0, probe_interval=60.0, last_error="HTTP 503")

    reported = await finish(
        connection, [Attempt(notification, 1, "queued", status=503, delay=1.0)], health=[opened]
    )

    assert reported[("circuit_opened", callback_id, None, None)] == 1
    row = await callback(connection, callback_id)
    assert (row["consecutive_failures"], row["last_error"]) == (5, "HTTP 503")
    assert row["circuit_opened_at"] is not None and row["next_probe_at"] is not None
    # Another worker owns it now: a stale report changes nothing.
    await connection.execute(
        "UPDATE callback_owners SET owner = 'worker-b', expires_at = now() + interval '1 min'"
    )
    closed = Health(callback_id, 0)
    assert await finish(connection, [], health=[closed]) == {}
    assert (await callback(connection, callback_id))["circuit_opened_at"] is not None


async def test_a_notification_stored_as_its_callback_was_disabled_fails_too(
    connection: asyncpg.Connection,
) -> None:
    """The race fail_stragglers closes: the echo read the callback as enabled, the disable
    failed what was pending, then the echo committed."""
    await add_webhook(connection, ["notification.exhausted"])
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner)
    await connection.fetch(HEALTH["disable_callbacks"], [callback_id], "gone")
    await connection.execute("UPDATE callbacks SET enabled = true WHERE id = $1", callback_id)
    straggler = await store_one(connection, Item(partner, uuid.uuid4()))  # stored while "enabled"
    await connection.execute("UPDATE callbacks SET enabled = false WHERE id = $1", callback_id)

    rows = await connection.fetch(HEALTH["fail_stragglers"])

    assert [
        (r["change"], r["notification_id"], r["reason"])
        for r in rows
        if r["change"] != "operator_event"
    ] == [("notification_failed", straggler, "gone")]
    failed = await connection.fetchrow(
        "SELECT status, failure_reason FROM deliveries WHERE notification_id = $1", straggler
    )
    assert tuple(failed) == ("failed", "gone")
    assert [e["data"]["notificationId"] for e in await queued_events(connection)] == [
        str(straggler)
    ]
    assert await connection.fetch(HEALTH["fail_stragglers"]) == []  # nothing left to fail
