"""The audit trail: each change of configuration leaves one record, in the change's own
transaction, saying who, from where and with which request; never a secret; and the table
refuses to be rewritten."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.core import audit
from service.core.database import create_pool
from service.core.settings import Settings
from tests.support.api import create_partner, emit, payload, put_callback, settled
from tests.support.receiver import Receiver, status
from tests.support.tokens import auth

ADMIN = auth()


async def _events(client: TestClient, query: str = "", **headers: str) -> list[dict[str, Any]]:
    response = await client.get(f"/audit-events{query}", headers=headers or ADMIN)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def test_a_callback_change_records_who_what_before_and_after_and_the_request(
    client: TestClient, partner: str
) -> None:
    bound = auth("callbacks:write", partner=partner)
    url = f"/partners/{partner}/callbacks/2"
    created = await client.put(url, json={"url": "https://a.example/hook"}, headers=bound)
    assert created.status == 201
    changed = await client.put(
        url,
        json={"url": "https://b.example/hook", "description": "CRM"},
        headers=bound | {"X-Request-Id": "req-42"},
    )
    assert changed.status == 200
    assert changed.headers["X-Request-Id"] == "req-42"

    update, create, _partner_created = await _events(client, f"?partnerUniqueId={partner}")

    assert create["action"] == "callback.created"
    assert create["details"] == {
        "url": "https://a.example/hook",
        "enabled": True,
        "description": None,
        "orderedDelivery": False,
        "deliveryOptions": {"headerNames": [], "signature": "hmac-sha256"},
        "maxInFlight": None,
        "maxPerSecond": None,
    }
    assert create["requestId"] == created.headers["X-Request-Id"]
    assert update["action"] == "callback.updated"
    assert update["partnerUniqueId"] == partner and update["notificationType"] == 2
    assert update["details"] == {
        "changes": {
            "url": {"before": "https://a.example/hook", "after": "https://b.example/hook"},
            "description": {"before": None, "after": "CRM"},
        }
    }
    assert update["actor"] == {
        "type": "token",
        "sub": "callbackhub-cli",
        "partnerBound": True,
        "scopes": ["callbacks:write"],
        "session": None,
    }
    assert update["clientAddress"] == "127.0.0.1"
    assert update["requestId"] == "req-42"
    assert datetime.fromisoformat(update["at"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_every_kind_of_change_is_recorded_and_no_secret_ever_is(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client, "Recorded")
    secrets = [(await put_callback(client, partner, 2, receiver.url))["signingSecret"]]
    base = f"/partners/{partner}/callbacks/2"
    revealed = await client.get(base + "/secret", headers=ADMIN)
    rotated = await client.post(base + "/secret/rotate", headers=ADMIN)
    secrets.append((await rotated.json())["signingSecret"])
    assert revealed.status == 200
    notification_id = await emit(client, partner, 2, payload(2))
    await settled(client, partner, notification_id, "delivered")
    redelivered = await client.post(
        f"/partners/{partner}/notifications/{notification_id}/redeliver", headers=ADMIN
    )
    assert redelivered.status == 202
    await settled(client, partner, notification_id, "delivered")
    since = {"since": "2020-01-01T00:00:00Z"}
    failed = await client.post(
        f"/partners/{partner}/notifications/redeliver-failed", json=since, headers=ADMIN
    )
    assert failed.status == 202
    disabled = await put_callback(client, partner, 2, receiver.url, enabled=False)
    assert disabled["enabled"] is False
    await put_callback(client, partner, 2, receiver.url, enabled=True)
    assert (await client.delete(base, headers=ADMIN)).status == 204
    assert (await client.delete(f"/partners/{partner}", headers=ADMIN)).status == 204

    events = await _events(client, f"?partnerUniqueId={partner}&limit=100")

    assert [e["action"] for e in reversed(events)] == [
        "partner.created",
        "callback.created",
        "callback.secret_revealed",
        "callback.secret_rotated",
        "notification.redelivered",
        "notifications.redelivered_failed",
        "callback.updated",
        "callback.disabled",
        "callback.updated",
        "callback.enabled",
        "callback.deleted",
        "partner.deleted",
    ]
    by_action = {e["action"]: e for e in events}
    assert by_action["callback.disabled"]["details"] == {"reason": "disabled_by_user"}
    assert by_action["notification.redelivered"]["details"] == {"notificationId": notification_id}
    assert by_action["notifications.redelivered_failed"]["details"]["queued"] == 0
    assert "previousSecretExpiresAt" in by_action["callback.secret_rotated"]["details"]
    dumped = json.dumps(events)
    for secret in secrets:
        assert secret not in dumped and secret.removeprefix("whsec_") not in dumped
    # The history outlives the partner; its own route still finds it.
    response = await client.get(f"/partners/{partner}/audit-events?limit=100", headers=ADMIN)
    assert (await response.json())["total"] == len(events)


async def test_an_automatic_disable_is_recorded_as_callbackhub_with_the_reason(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    receiver.default = status(410)
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    notification_id = await emit(client, partner, 2, payload(2))
    await settled(client, partner, notification_id, "failed")

    [disabled] = await _events(client, f"?partnerUniqueId={partner}&action=callback.disabled")

    assert disabled["actor"] == {
        "type": "system",
        "sub": "callbackhub",
        "partnerBound": None,
        "scopes": None,
        "session": None,
    }
    assert disabled["notificationType"] == 2
    assert disabled["details"] == {"reason": "gone", "failingSince": None}
    assert disabled["requestId"] is None


async def test_a_refused_change_records_nothing(client: TestClient, partner: str) -> None:
    before = await _events(client)
    bad_url = await client.put(
        f"/partners/{partner}/callbacks/1", json={"url": "ftp://x.example"}, headers=ADMIN
    )
    assert bad_url.status == 400
    unknown = await client.put(
        f"/partners/{uuid.uuid4()}/callbacks/1", json={"url": "https://x.example"}, headers=ADMIN
    )
    assert unknown.status == 404
    missing = await client.delete(f"/partners/{partner}/callbacks/3", headers=ADMIN)
    assert missing.status == 404
    assert await _events(client) == before


async def test_filters_and_pages_newest_first(client: TestClient) -> None:
    partners = [await create_partner(client, f"P{i}") for i in range(3)]
    for partner in partners:
        await put_callback(client, partner, 1)
    start = (await _events(client))[0]["at"]

    by_partner = await _events(client, f"?partnerUniqueId={partners[1]}")
    assert [e["action"] for e in by_partner] == ["callback.created", "partner.created"]
    created = await _events(client, "?action=callback.created")
    assert [e["partnerUniqueId"] for e in created] == list(reversed(partners))
    assert await _events(client, "?actor=someone-else") == []
    assert len(await _events(client, "?actor=callbackhub-cli")) == 6
    until = await _events(client, "?until=2000-01-01T00:00:00Z")
    assert until == []
    since = await _events(client, "?since=" + start.replace("+", "%2B"))
    assert since[-1]["at"] == start
    page = await client.get("/audit-events?limit=2&offset=2", headers=ADMIN)
    body = await page.json()
    assert body["total"] == 6 and [e["action"] for e in body["items"]] == [
        "callback.created",
        "partner.created",
    ]
    bad = await client.get("/audit-events?since=1700000000", headers=ADMIN)
    assert bad.status == 400


async def test_a_partner_reads_its_own_history_and_nobody_elses(client: TestClient) -> None:
    mine, theirs = await create_partner(client, "Mine"), await create_partner(client, "Theirs")
    read = auth("callbacks:read", partner=mine)

    own = await client.get(f"/partners/{mine}/audit-events", headers=read)
    assert own.status == 200
    assert [e["partnerUniqueId"] for e in (await own.json())["items"]] == [mine]
    other = await client.get(f"/partners/{theirs}/audit-events", headers=read)
    assert other.status == 403
    everyone = await client.get("/audit-events", headers=read)
    assert everyone.status == 403
    unknown = await client.get(f"/partners/{uuid.uuid4()}/audit-events", headers=ADMIN)
    assert unknown.status == 404


async def _insert_record(connection: asyncpg.Connection, at: datetime) -> int:
    record_id: int = await connection.fetchval(
        "INSERT INTO audit_events (at, action, actor) VALUES ($1, 'partner.created',"
        ' \'{"type": "system", "sub": "test"}\') RETURNING id',
        at,
    )
    return record_id


async def test_the_table_is_append_only(connection: asyncpg.Connection) -> None:
    record = await _insert_record(connection, datetime.now(UTC))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only: UPDATE"):
        await connection.execute("UPDATE audit_events SET action = 'forged' WHERE id = $1", record)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only: DELETE"):
        await connection.execute("DELETE FROM audit_events WHERE id = $1", record)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only: TRUNCATE"):
        await connection.execute("TRUNCATE audit_events")
    # Nor by setting the retention job's cut-off by hand for a recent record.
    async with connection.transaction():
        await connection.execute(
            "SELECT set_config('callbackhub.audit_cutoff', '2000-01-01', true)"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM audit_events WHERE id = $1", record)
    assert await connection.fetchval("SELECT action FROM audit_events WHERE id = $1", record) == (
        "partner.created"
    )


async def test_retention_removes_only_records_past_it(
    connection: asyncpg.Connection, database: str, settings: Settings
) -> None:
    now = datetime.now(UTC)
    old = [await _insert_record(connection, now - timedelta(days=days)) for days in (401, 900)]
    kept = [await _insert_record(connection, now - timedelta(days=days)) for days in (0, 399)]

    pool = await create_pool(database, settings)
    try:
        assert await audit.expire(pool, settings.audit_retention_days, 1000) == len(old)
        assert await audit.expire(pool, settings.audit_retention_days, 1000) == 0
    finally:
        await pool.close()

    remaining = await connection.fetch("SELECT id FROM audit_events ORDER BY id")
    assert [row["id"] for row in remaining] == kept
