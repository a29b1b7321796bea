"""The operator webhook: where the platform team receives operational events.

There is at most one. Its URL passes the same URL guard as a partner's callback; its signing
secret (``whsec_…``) is stored sealed, shown once at creation and at each rotation, and, during
a rotation, the previous one keeps signing next to it for CALLBACKHUB_SECRET_ROTATION_OVERLAP.
"""

from __future__ import annotations

from typing import Any

import asyncpg

import sql
from service.core import audit
from service.core.audit import Actor, AuditAction
from service.core.database import Pool
from service.core.encryption import Keyring
from service.core.errors import NotFound
from service.core.schemas import (
    OperatorWebhook,
    OperatorWebhookCreated,
    OperatorWebhookUpdate,
    SigningSecret,
)
from service.core.signing import new_signing_secret
from service.core.stored_secrets import OPERATOR_WEBHOOK_ROW

Q = sql.load_queries("operator_webhook")


class OperatorWebhookNotFound(NotFound):
    """No operator webhook is registered."""


def _webhook(row: asyncpg.Record | dict[str, Any]) -> OperatorWebhook:
    return OperatorWebhook(
        url=row["url"],
        enabled=row["enabled"],
        events=row["event_types"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def put_webhook(
    pool: Pool, keyring: Keyring, update: OperatorWebhookUpdate, actor: Actor
) -> tuple[OperatorWebhook, bool]:
    """Register or change the webhook; returns it (with its secret when created) and whether
    it was created. The caller has vetted the URL."""
    secret = new_signing_secret()
    events = sorted(set(update.events)) if update.events is not None else None
    async with pool.acquire() as connection, connection.transaction():
        before = await connection.fetchrow(Q["lock_operator_webhook"])
        sealed = keyring.seal(secret, OPERATOR_WEBHOOK_ROW)
        row = await connection.fetchrow(
            Q["upsert_operator_webhook"], update.url, update.enabled, events, sealed
        )
        assert row is not None
        details: dict[str, Any] = {"url": row["url"], "enabled": row["enabled"], "events": events}
        if before is not None:
            details = {
                "changes": audit.changed_fields(
                    before, row, {"url": "url", "enabled": "enabled", "event_types": "events"}
                )
            }
        change = "created" if row["created"] else "updated"
        await audit.record(
            connection,
            actor,
            AuditAction.OPERATOR_WEBHOOK_CHANGED,
            details={"change": change} | details,
        )
    if row["created"]:
        return OperatorWebhookCreated(**_webhook(row).model_dump(), signing_secret=secret), True
    return _webhook(row), False


async def get_webhook(pool: Pool) -> OperatorWebhook:
    row = await pool.fetchrow(Q["get_operator_webhook"])
    if row is None:
        raise OperatorWebhookNotFound()
    return _webhook(row)


async def delete_webhook(pool: Pool, actor: Actor) -> None:
    """Delete the webhook; events still to be sent fail (reason webhook_deleted)."""
    async with pool.acquire() as connection, connection.transaction():
        url = await connection.fetchval(Q["delete_operator_webhook"])
        if url is None:
            raise OperatorWebhookNotFound()
        await audit.record(
            connection,
            actor,
            AuditAction.OPERATOR_WEBHOOK_CHANGED,
            details={"change": "deleted", "url": url},
        )


async def rotate_secret(
    pool: Pool, keyring: Keyring, overlap_seconds: float, actor: Actor
) -> SigningSecret:
    """A new secret; the old one keeps signing next to it for ``overlap_seconds``."""
    secret = new_signing_secret()
    async with pool.acquire() as connection, connection.transaction():
        sealed = keyring.seal(secret, OPERATOR_WEBHOOK_ROW)
        expires_at = await connection.fetchval(Q["rotate_operator_secret"], overlap_seconds, sealed)
        if expires_at is None:
            raise OperatorWebhookNotFound()
        await audit.record(
            connection,
            actor,
            AuditAction.OPERATOR_WEBHOOK_CHANGED,
            details={"change": "secret_rotated", "previousSecretExpiresAt": expires_at.isoformat()},
        )
    return SigningSecret(signing_secret=secret)
