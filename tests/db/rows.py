"""Small helpers for the database tests: rows inserted and SQL functions called through the
named queries of ``sql/queries``, every value a $n parameter."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg

import sql

PARTNERS = sql.load_queries("partners")
CALLBACKS = sql.load_queries("callbacks")
NOTIFICATIONS = sql.load_queries("notifications")
QUEUE = sql.load_queries("queue")
HEALTH = sql.load_queries("callback_health")

# Notification types seeded by 0001_core.sql.
WORKFLOW, NOTES, DOCUMENT = 1, 2, 3
DAY = 86400.0


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def add_partner(connection: asyncpg.Connection, name: str = "Acme Brokers") -> uuid.UUID:
    row = await connection.fetchrow(PARTNERS["insert_partner"], uuid.uuid4(), name)
    assert row is not None
    partner: uuid.UUID = row["id"]
    return partner


async def add_callback(
    connection: asyncpg.Connection,
    partner: uuid.UUID,
    notification_type: int = WORKFLOW,
    *,
    ordered: bool = False,
    enabled: bool = True,
) -> int:
    row = await connection.fetchrow(
        CALLBACKS["upsert_callback"],
        partner,
        notification_type,
        f"https://partner.example/hooks/{notification_type}",
        enabled,
        None,
        ordered,
        False,
        secret(),
        "{}",  # delivery options (jsonb, as text: this connection has no JSON codec)
        None,  # sealed credentials
        None,  # maxInFlight
        None,  # maxPerSecond
        False,  # (neither limit named)
        False,
    )
    assert row is not None
    callback_id: int = row["id"]
    return callback_id


@dataclass(frozen=True)
class Item:
    """One notification of a batch for store_notifications_v1."""

    partner: uuid.UUID
    subject: uuid.UUID
    notification_type: int = WORKFLOW
    payload: bytes = b'{"state": "x"}'
    key: str | None = None
    hash: bytes | None = None


class Outcome(NamedTuple):
    sent_id: uuid.UUID  # the id the batch proposed for the item
    outcome: str
    stored_id: uuid.UUID


async def store(
    connection: asyncpg.Connection, items: Sequence[Item], key_ttl: float = DAY
) -> list[Outcome]:
    """One call of store_notifications_v1; the outcomes in the items' order."""
    ids = [uuid.uuid4() for _ in items]
    rows = await connection.fetch(
        NOTIFICATIONS["store_notifications"],
        ids,
        [i.partner for i in items],
        [i.notification_type for i in items],
        [i.subject for i in items],
        [i.payload for i in items],
        [i.key for i in items],
        [i.hash for i in items],
        key_ttl,
    )
    assert [row["item"] for row in rows] == list(range(1, len(items) + 1))
    return [Outcome(ids[r["item"] - 1], r["outcome"], r["stored_id"]) for r in rows]


async def store_one(connection: asyncpg.Connection, item: Item) -> uuid.UUID:
    [outcome] = await store(connection, [item])
    assert outcome.outcome == "stored", outcome
    return outcome.stored_id


async def claim(
    connection: asyncpg.Connection, worker: str = "worker-a", lease: float = 60.0, total: int = 100
) -> list[asyncpg.Record]:
    """claim_lanes for a worker with no lanes yet: up to ``total`` per callback it can own."""
    rows: list[asyncpg.Record] = await connection.fetch(
        QUEUE["claim_lanes"], worker, lease, [], [], 100, total, 1, []
    )
    return rows


@dataclass(frozen=True)
class Attempt:
    """A finished attempt and its verdict, as the dispatcher reports it."""

    notification_id: uuid.UUID
    attempt: int
    verdict: str  # delivered | queued | failed
    status: int | None = 200
    delay: float = 0.0
    reason: str | None = None
    body: str | None = "ok"
    error: str | None = None
    signature: str | None = "v1,c2lnbmF0dXJl"


class Change(NamedTuple):
    change: str
    callback_id: int | None
    notification_id: uuid.UUID | None = None
    reason: str | None = None


def changes(rows: Iterable[asyncpg.Record]) -> Counter[Change]:
    """The changes reported, but for the operator_event rows (tests/db/test_operator_events.py
    covers those)."""
    return Counter(Change(*row) for row in rows if row["change"] != "operator_event")


async def finish(
    connection: asyncpg.Connection,
    attempts: Sequence[Attempt],
    *,
    ordered: Sequence[tuple[int, uuid.UUID]] = (),
    succeeded: Sequence[int] = (),
    gone: Sequence[int] = (),
    failed: Sequence[int] = (),
    disable_after: float = DAY,
    failing_after: int = 4,
    health: Sequence[Health] = (),
) -> Counter[Change]:
    """One call of finish_attempts_v4 (v3 with events and health, v2 plus the signatures sent);
    the changes it reports."""
    started = datetime.now(UTC)
    rows = await connection.fetch(
        QUEUE["finish_attempts"],
        [a.notification_id for a in attempts],
        [a.attempt for a in attempts],
        [started for _ in attempts],
        [12 for _ in attempts],
        [a.status for a in attempts],
        [a.body for a in attempts],
        [a.error for a in attempts],
        [a.signature for a in attempts],
        [a.verdict for a in attempts],
        [a.delay for a in attempts],
        [a.reason for a in attempts],
        [callback for callback, _ in ordered],
        [subject for _, subject in ordered],
        list(succeeded),
        list(gone),
        list(failed),
        disable_after,
        failing_after,
        "worker-a",
        [h.callback_id for h in health],
        [h.failures for h in health],
        [h.probe_in for h in health],
        [h.probe_interval for h in health],
        [h.paused_for for h in health],
        [h.last_error for h in health],
    )
    return changes(rows)


@dataclass(frozen=True)
class Health:
    """A callback's health as the dispatcher reports it with the attempts it records."""

    callback_id: int
    failures: int
    probe_in: float | None = None
    probe_interval: float | None = None
    paused_for: float | None = None
    last_error: str | None = None


async def delivery(connection: asyncpg.Connection, notification_id: uuid.UUID) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT *, next_attempt_at > now() AS in_future FROM deliveries WHERE notification_id = $1",
        notification_id,
    )
    assert row is not None, notification_id
    return row


async def callback(connection: asyncpg.Connection, callback_id: int) -> asyncpg.Record:
    row = await connection.fetchrow("SELECT * FROM callbacks WHERE id = $1", callback_id)
    assert row is not None, callback_id
    return row


async def attempt_rows(
    connection: asyncpg.Connection, notification_id: uuid.UUID
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT attempt, response_status, error FROM delivery_attempts"
        " WHERE notification_id = $1 ORDER BY attempt",
        notification_id,
    )
    return rows
