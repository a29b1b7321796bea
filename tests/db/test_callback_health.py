"""disable_callbacks_v1 (0006), called through the disable_callbacks query: the one place a
callback is disabled, reporting what it changed."""

from __future__ import annotations

import uuid
from collections import Counter

import asyncpg
import pytest

from tests.db.rows import (
    HEALTH,
    Attempt,
    Change,
    Item,
    add_callback,
    add_partner,
    callback,
    changes,
    claim,
    delivery,
    finish,
    store,
    store_one,
)


async def disable(
    connection: asyncpg.Connection, callbacks: list[int], reason: str
) -> Counter[Change]:
    return changes(await connection.fetch(HEALTH["disable_callbacks"], callbacks, reason))


async def pending_deliveries(
    connection: asyncpg.Connection,
) -> tuple[int, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A callback with one delivery leased ('delivering'), one due and one not due yet."""
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner)
    delivering = await store_one(connection, Item(partner, uuid.uuid4()))
    await claim(connection)
    queued, scheduled = (
        o.stored_id
        for o in await store(connection, [Item(partner, uuid.uuid4()), Item(partner, uuid.uuid4())])
    )
    await connection.execute(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)"
        " WHERE notification_id = $2",
        600.0,
        scheduled,
    )
    assert (await delivery(connection, delivering))["status"] == "delivering"
    return callback_id, delivering, queued, scheduled


@pytest.mark.parametrize(
    ("reason", "failure"),
    [("disabled_by_user", "callback_disabled"), ("failing", "callback_disabled"), ("gone", "gone")],
)
async def test_disabling_reports_the_callback_once_and_fails_its_pending_deliveries(
    connection: asyncpg.Connection, reason: str, failure: str
) -> None:
    callback_id, delivering, queued, scheduled = await pending_deliveries(connection)
    other_partner = await add_partner(connection, "Bystander")
    other_callback = await add_callback(connection, other_partner)
    bystander = await store_one(connection, Item(other_partner, uuid.uuid4()))

    reported = await disable(connection, [callback_id], reason)

    assert reported == {
        Change("callback_disabled", callback_id, None, reason): 1,
        Change("notification_failed", callback_id, delivering, failure): 1,
        Change("notification_failed", callback_id, queued, failure): 1,
        Change("notification_failed", callback_id, scheduled, failure): 1,
    }
    row = await callback(connection, callback_id)
    assert (row["enabled"], row["disabled_reason"]) == (False, reason)
    for notification_id in (delivering, queued, scheduled):
        state = await delivery(connection, notification_id)
        assert (state["status"], state["failure_reason"]) == ("failed", failure)
        assert (state["next_attempt_at"], state["locked_by"]) == (None, None)
        assert state["finished_at"] is not None
    assert (await delivery(connection, bystander))["status"] == "queued"
    assert (await callback(connection, other_callback))["enabled"] is True

    assert await disable(connection, [callback_id], reason) == {}
    assert (await callback(connection, callback_id))["disabled_reason"] == reason


async def test_disabling_again_with_another_reason_records_it_without_reporting(
    connection: asyncpg.Connection,
) -> None:
    callback_id, *_ = await pending_deliveries(connection)
    await disable(connection, [callback_id], "disabled_by_user")

    assert await disable(connection, [callback_id], "gone") == {}
    row = await callback(connection, callback_id)
    assert (row["enabled"], row["disabled_reason"]) == (False, "gone")


async def test_disabling_several_callbacks_reports_only_those_that_were_enabled(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    enabled = await add_callback(connection, partner, 1)
    already = await add_callback(connection, partner, 2, enabled=False)
    assert (await callback(connection, already))["disabled_reason"] == "disabled_by_user"

    reported = await disable(connection, [enabled, already], "disabled_by_user")

    assert reported == {Change("callback_disabled", enabled, None, "disabled_by_user"): 1}


async def test_a_finish_arriving_after_the_disable_leaves_the_delivery_failed(
    connection: asyncpg.Connection,
) -> None:
    """The dispatcher's attempt was under way when the callback was disabled: its write-back
    finds the row no longer 'delivering' and changes nothing."""
    callback_id, delivering, _, _ = await pending_deliveries(connection)
    await disable(connection, [callback_id], "disabled_by_user")

    reported = await finish(
        connection, [Attempt(delivering, 1, "delivered")], succeeded=[callback_id]
    )

    assert reported == {}
    state = await delivery(connection, delivering)
    assert (state["status"], state["failure_reason"]) == ("failed", "callback_disabled")
    assert state["delivered_at"] is None
