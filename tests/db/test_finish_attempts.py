"""finish_attempts_v3 (0008: v2 of 0006 plus the signature each attempt sent), called through
the finish_attempts query after claim_due: the verdicts, the changes it reports, ordered
successors, callback health, and the guard that keeps a stale lease from overwriting a newer
attempt."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.db.rows import (
    QUEUE,
    Attempt,
    Change,
    Item,
    add_callback,
    add_partner,
    attempt_rows,
    callback,
    claim,
    delivery,
    finish,
    store,
    store_one,
)


async def one_claimed(
    connection: asyncpg.Connection, *, ordered: bool = False
) -> tuple[int, uuid.UUID, uuid.UUID]:
    """A callback and one notification of a subject, claimed (attempt 1)."""
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner, ordered=ordered)
    subject = uuid.uuid4()
    notification = await store_one(connection, Item(partner, subject))
    [claimed] = await claim(connection)
    assert (claimed["notification_id"], claimed["attempts"]) == (notification, 1)
    return callback_id, subject, notification


async def test_delivered_marks_the_row_and_records_the_attempt(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)

    reported = await finish(
        connection, [Attempt(notification, 1, "delivered", status=204)], succeeded=[callback_id]
    )

    assert reported == {}
    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["next_attempt_at"]) == ("delivered", None, None)
    assert row["delivered_at"] is not None and row["finished_at"] is not None
    assert row["failure_reason"] is None
    assert [tuple(r) for r in await attempt_rows(connection, notification)] == [(1, 204, None)]


async def test_the_signature_each_attempt_sent_is_kept_with_it(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)
    failed = Attempt(notification, 1, "queued", status=500, delay=0.0, signature="v1,Zmlyc3Q=")
    await finish(connection, [failed], failed=[callback_id])
    [again] = await claim(connection)
    assert again["attempts"] == 2
    delivered = Attempt(notification, 2, "delivered", signature="v1,bmV3 v1,b2xk")
    await finish(connection, [delivered], succeeded=[callback_id])

    signatures = await connection.fetch(
        "SELECT attempt, signature FROM delivery_attempts WHERE notification_id = $1"
        " ORDER BY attempt",
        notification,
    )
    assert [tuple(row) for row in signatures] == [(1, "v1,Zmlyc3Q="), (2, "v1,bmV3 v1,b2xk")]


async def test_delivered_after_failed_attempts_reports_notification_recovered(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)
    retry = await finish(
        connection,
        [Attempt(notification, 1, "queued", status=503, delay=0.0)],
        failed=[callback_id],
    )
    assert retry == {}
    [claimed] = await claim(connection)
    assert claimed["attempts"] == 2

    reported = await finish(
        connection, [Attempt(notification, 2, "delivered")], succeeded=[callback_id]
    )

    assert reported == {
        Change("notification_recovered", callback_id, notification): 1,
        Change("callback_recovered", callback_id): 1,
    }
    assert (await delivery(connection, notification))["status"] == "delivered"
    assert [r["attempt"] for r in await attempt_rows(connection, notification)] == [1, 2]


async def test_failed_reports_notification_failed_with_its_reason(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)

    reported = await finish(
        connection,
        [Attempt(notification, 1, "failed", status=None, reason="timeout", error="timed out")],
        failed=[callback_id],
    )

    assert reported == {Change("notification_failed", callback_id, notification, "timeout"): 1}
    row = await delivery(connection, notification)
    assert (row["status"], row["failure_reason"], row["locked_by"]) == ("failed", "timeout", None)
    assert row["finished_at"] is not None and row["delivered_at"] is None
    assert [tuple(r) for r in await attempt_rows(connection, notification)] == [
        (1, None, "timed out")
    ]


async def test_queued_with_a_delay_schedules_the_retry_and_reports_nothing(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)

    reported = await finish(
        connection,
        [Attempt(notification, 1, "queued", status=500, delay=300.0)],
        failed=[callback_id],
    )

    assert reported == {}
    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["finished_at"]) == ("queued", None, None)
    assert row["in_future"] is True
    assert await claim(connection) == []
    # The first failure opens the callback's failure window.
    assert (await callback(connection, callback_id))["failing_since"] is not None


@pytest.mark.parametrize("verdict", ["delivered", "failed"])
async def test_finishing_an_ordered_head_releases_its_successor(
    connection: asyncpg.Connection, verdict: str
) -> None:
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner, ordered=True)
    subject, other = uuid.uuid4(), uuid.uuid4()
    stored = await store(
        connection,
        [
            Item(partner, subject),
            Item(partner, subject),
            Item(partner, subject),
            Item(partner, other),
            Item(partner, other),
        ],
    )
    head, successor, third, other_head, other_next = (o.stored_id for o in stored)
    claimed = await claim(connection)
    assert {row["notification_id"] for row in claimed} == {head, other_head}

    reason = None if verdict == "delivered" else "http_error"
    reported = await finish(
        connection,
        [Attempt(head, 1, verdict, reason=reason)],
        ordered=[(callback_id, subject)],
        succeeded=[callback_id] if verdict == "delivered" else [],
        failed=[] if verdict == "delivered" else [callback_id],
    )

    expected = {Change("successor_released", callback_id, successor): 1}
    if verdict == "failed":
        expected[Change("notification_failed", callback_id, head, "http_error")] = 1
    assert reported == expected
    assert (await delivery(connection, successor))["next_attempt_at"] is not None
    assert (await delivery(connection, third))["next_attempt_at"] is None
    assert (await delivery(connection, other_next))["next_attempt_at"] is None
    [next_claim] = await claim(connection)
    assert next_claim["notification_id"] == successor


async def test_a_retried_ordered_head_keeps_its_successor_waiting(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner, ordered=True)
    subject = uuid.uuid4()
    head, successor = (o.stored_id for o in await store(connection, [Item(partner, subject)] * 2))
    await claim(connection)

    reported = await finish(
        connection,
        [Attempt(head, 1, "queued", status=500, delay=0.0)],
        ordered=[(callback_id, subject)],
        failed=[callback_id],
    )

    assert reported == {}
    assert (await delivery(connection, successor))["next_attempt_at"] is None


async def test_gone_disables_the_callback_and_fails_its_pending_deliveries(
    connection: asyncpg.Connection,
) -> None:
    callback_id, subject, notification = await one_claimed(connection)
    partner = (await callback(connection, callback_id))["partner_id"]
    queued = [o.stored_id for o in await store(connection, [Item(partner, subject)] * 2)]
    bystander_partner = await add_partner(connection, "Bystander")
    bystander_callback = await add_callback(connection, bystander_partner)
    bystander = await store_one(connection, Item(bystander_partner, subject))

    reported = await finish(
        connection,
        [Attempt(notification, 1, "failed", status=410, reason="gone")],
        gone=[callback_id],
    )

    assert reported == {
        Change("notification_failed", callback_id, notification, "gone"): 1,
        Change("callback_disabled", callback_id, None, "gone"): 1,
        Change("notification_failed", callback_id, queued[0], "gone"): 1,
        Change("notification_failed", callback_id, queued[1], "gone"): 1,
    }
    row = await callback(connection, callback_id)
    assert (row["enabled"], row["disabled_reason"]) == (False, "gone")
    for notification_id in (notification, *queued):
        state = await delivery(connection, notification_id)
        assert (state["status"], state["failure_reason"], state["next_attempt_at"]) == (
            "failed",
            "gone",
            None,
        )
    assert (await delivery(connection, bystander))["status"] == "queued"
    assert (await callback(connection, bystander_callback))["enabled"] is True


async def test_failing_for_longer_than_disable_after_disables_the_callback(
    connection: asyncpg.Connection,
) -> None:
    callback_id, subject, notification = await one_claimed(connection)
    partner = (await callback(connection, callback_id))["partner_id"]
    queued = await store_one(connection, Item(partner, subject))
    await connection.execute(
        "UPDATE callbacks SET failing_since = now() - make_interval(secs => $1) WHERE id = $2",
        3600.0,
        callback_id,
    )

    reported = await finish(
        connection,
        [Attempt(notification, 1, "queued", status=500, delay=30.0)],
        failed=[callback_id],
        disable_after=60.0,
    )

    assert reported == {
        Change("callback_disabled", callback_id, None, "failing"): 1,
        Change("notification_failed", callback_id, notification, "callback_disabled"): 1,
        Change("notification_failed", callback_id, queued, "callback_disabled"): 1,
    }
    row = await callback(connection, callback_id)
    assert (row["enabled"], row["disabled_reason"]) == (False, "failing")
    for notification_id in (notification, queued):
        state = await delivery(connection, notification_id)
        assert (state["status"], state["failure_reason"]) == ("failed", "callback_disabled")


async def test_failing_within_disable_after_keeps_the_callback_enabled(
    connection: asyncpg.Connection,
) -> None:
    callback_id, _, notification = await one_claimed(connection)
    await connection.execute(
        "UPDATE callbacks SET failing_since = now() - make_interval(secs => $1) WHERE id = $2",
        30.0,
        callback_id,
    )

    reported = await finish(
        connection,
        [Attempt(notification, 1, "queued", status=500, delay=30.0)],
        failed=[callback_id],
        disable_after=60.0,
    )

    assert reported == {}
    row = await callback(connection, callback_id)
    assert (row["enabled"], row["disabled_reason"]) == (True, None)
    assert (await delivery(connection, notification))["status"] == "queued"


@pytest.mark.parametrize("failing", [True, False])
async def test_a_success_closes_the_failure_window(
    connection: asyncpg.Connection, failing: bool
) -> None:
    callback_id, _, notification = await one_claimed(connection)
    if failing:
        await connection.execute(
            "UPDATE callbacks SET failing_since = now() - make_interval(secs => $1) WHERE id = $2",
            600.0,
            callback_id,
        )

    reported = await finish(
        connection, [Attempt(notification, 1, "delivered")], succeeded=[callback_id]
    )

    assert reported == ({Change("callback_recovered", callback_id): 1} if failing else {})
    assert (await callback(connection, callback_id))["failing_since"] is None


@pytest.mark.parametrize(
    ("verdict", "status", "reason"),
    [("failed", 500, "http_error"), ("delivered", 200, None), ("queued", 500, None)],
)
async def test_a_stale_lease_cannot_overwrite_the_attempt_that_took_it_over(
    connection: asyncpg.Connection, verdict: str, status: int, reason: str | None
) -> None:
    """Worker A's leases (the delivery's and its ownership of the callback) expire while its
    attempt is still under way; worker B claims the row again (attempt 2). A's late finish must
    leave B's lease alone, and release nothing."""
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner, ordered=True)
    subject = uuid.uuid4()
    notification, successor = (
        o.stored_id for o in await store(connection, [Item(partner, subject)] * 2)
    )
    [by_a] = await claim(connection, worker="worker-a")
    assert (by_a["notification_id"], by_a["attempts"]) == (notification, 1)
    await connection.execute(
        "UPDATE deliveries SET next_attempt_at = now() - interval '1 second'"
        " WHERE notification_id = $1",
        notification,
    )
    await connection.execute("UPDATE callback_owners SET expires_at = now() - interval '1 second'")
    [by_b] = await claim(connection, worker="worker-b")
    assert (by_b["notification_id"], by_b["attempts"]) == (notification, 2)
    lease = (await delivery(connection, notification))["next_attempt_at"]

    late = await finish(
        connection,
        [Attempt(notification, 1, verdict, status=status, reason=reason)],
        ordered=[(callback_id, subject)],
        succeeded=[callback_id] if verdict == "delivered" else [],
        failed=[] if verdict == "delivered" else [callback_id],
    )

    assert late == {}
    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["attempts"]) == ("delivering", "worker-b", 2)
    assert (row["next_attempt_at"], row["failure_reason"], row["finished_at"]) == (
        lease,
        None,
        None,
    )
    assert row["delivered_at"] is None
    assert (await delivery(connection, successor))["next_attempt_at"] is None
    # A's attempt did happen: it is in the attempt log, under its own number.
    assert [tuple(r) for r in await attempt_rows(connection, notification)] == [(1, status, None)]

    current = await finish(
        connection,
        [Attempt(notification, 2, "delivered", status=204)],
        ordered=[(callback_id, subject)],
        succeeded=[callback_id],
    )

    expected = {Change("successor_released", callback_id, successor): 1}
    if verdict != "delivered":  # A's attempt failed: recovered, and its window closes
        expected[Change("notification_recovered", callback_id, notification)] = 1
        expected[Change("callback_recovered", callback_id)] = 1
    assert current == expected
    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["attempts"]) == ("delivered", None, 2)
    assert [tuple(r) for r in await attempt_rows(connection, notification)] == [
        (1, status, None),
        (2, 204, None),
    ]


async def test_a_stale_worker_cannot_release_the_lease_that_was_taken_over(
    connection: asyncpg.Connection,
) -> None:
    """release_leases (a worker shutting down) only gives back what that worker still holds."""
    _, _, notification = await one_claimed(connection)
    await connection.execute(
        "UPDATE deliveries SET next_attempt_at = now() - interval '1 second'"
        " WHERE notification_id = $1",
        notification,
    )
    await connection.execute("UPDATE callback_owners SET expires_at = now() - interval '1 second'")
    [by_b] = await claim(connection, worker="worker-b")
    assert by_b["attempts"] == 2

    callback = by_b["callback_id"]
    await connection.execute(QUEUE["release_leases"], [notification], "worker-a", [callback])

    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["attempts"]) == ("delivering", "worker-b", 2)
    assert await connection.fetchval("SELECT owner FROM callback_owners") == "worker-b"

    await connection.execute(QUEUE["release_leases"], [notification], "worker-b", [callback])

    row = await delivery(connection, notification)
    assert (row["status"], row["locked_by"], row["attempts"]) == ("queued", None, 1)
    assert await connection.fetchval("SELECT count(*) FROM callback_owners") == 0


async def test_gone_on_an_ordered_head_fails_the_rest_of_its_subject(
    connection: asyncpg.Connection,
) -> None:
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner, ordered=True)
    subject = uuid.uuid4()
    head, successor, third = (
        o.stored_id for o in await store(connection, [Item(partner, subject)] * 3)
    )
    await claim(connection)

    reported = await finish(
        connection,
        [Attempt(head, 1, "failed", status=410, reason="gone")],
        ordered=[(callback_id, subject)],
        gone=[callback_id],
    )

    # Exactly these: the successor failed with the callback, so it is not "released" either.
    assert reported == {
        Change("notification_failed", callback_id, head, "gone"): 1,
        Change("callback_disabled", callback_id, None, "gone"): 1,
        Change("notification_failed", callback_id, successor, "gone"): 1,
        Change("notification_failed", callback_id, third, "gone"): 1,
    }
    for notification_id in (successor, third):
        state = await delivery(connection, notification_id)
        assert (state["status"], state["failure_reason"], state["next_attempt_at"]) == (
            "failed",
            "gone",
            None,
        )
