"""The audit trail: who changed which partner's configuration, when, from where, and how.

Every domain function that changes configuration takes the ``Actor`` and calls ``record``
inside its own transaction, so a change and its record commit together or not at all. The
table is append-only (a trigger refuses UPDATE and DELETE); only ``expire`` removes records,
once they are older than ``CALLBACKHUB_AUDIT_RETENTION_DAYS``. No secret ever goes in.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

import sql
from service.core.database import Pool
from service.core.errors import PartnerNotFound
from service.core.schemas import AuditEvent, AuditEventPage, AuditEventQuery

Q = sql.load_queries("audit")


class AuditAction(StrEnum):
    PARTNER_CREATED = "partner.created"
    PARTNER_DELETED = "partner.deleted"
    CALLBACK_CREATED = "callback.created"
    CALLBACK_UPDATED = "callback.updated"
    CALLBACK_DELETED = "callback.deleted"
    CALLBACK_ENABLED = "callback.enabled"
    CALLBACK_DISABLED = "callback.disabled"  # by the partner, or by callbackhub (a trigger)
    SECRET_REVEALED = "callback.secret_revealed"  # noqa: S105 - an action, not a secret
    SECRET_ROTATED = "callback.secret_rotated"  # noqa: S105
    NOTIFICATION_REDELIVERED = "notification.redelivered"
    FAILED_REDELIVERED = "notifications.redelivered_failed"
    PORTAL_LINK_ISSUED = "portal.link_issued"
    PORTAL_SESSIONS_REVOKED = "portal.sessions_revoked"
    OPERATOR_WEBHOOK_CHANGED = "operator_webhook.changed"
    OPERATOR_EVENT_REDELIVERED = "operator_event.redelivered"
    KEYS_ROTATED = "keys.rotated"


class ActorType(StrEnum):
    TOKEN = "token"  # noqa: S105 - an API call with a bearer token
    PORTAL = "portal"  # a person in the partner portal
    CLI = "cli"  # a `callbackhub` command run against the database
    SYSTEM = "system"  # callbackhub itself (for example an automatic disable)


@dataclass(frozen=True)
class Actor:
    """Who made a change, and the request it came with."""

    type: ActorType
    subject: str | None
    partner_bound: bool = False
    scopes: tuple[str, ...] = ()
    session: str | None = None  # the portal session's public id (never the cookie)
    client_address: str | None = None
    request_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"type": self.type.value, "sub": self.subject}
        if self.type in (ActorType.TOKEN, ActorType.PORTAL):
            actor |= {"partnerBound": self.partner_bound, "scopes": list(self.scopes)}
        if self.session is not None:
            actor["session"] = self.session
        return actor | dict(self.extra)


SYSTEM = Actor(ActorType.SYSTEM, "callbackhub")


def cli_actor(command: str) -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return Actor(ActorType.CLI, user, extra={"command": command})


async def record(
    connection: asyncpg.Connection,
    actor: Actor,
    action: AuditAction,
    partner_id: uuid.UUID | None = None,
    notification_type: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one record; call it inside the transaction of the change it records."""
    await connection.execute(
        Q["insert_audit_event"],
        action.value,
        partner_id,
        notification_type,
        actor.as_json(),
        actor.client_address,
        actor.request_id,
        dict(details or {}),
    )


def changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], names: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """``{apiName: {"before", "after"}}`` for the columns in ``names`` whose value changed."""
    return {
        api_name: {"before": before[column], "after": after[column]}
        for column, api_name in names.items()
        if before[column] != after[column]
    }


async def list_audit_events(
    pool: Pool, wanted: AuditEventQuery, partner_id: uuid.UUID | None
) -> AuditEventPage:
    """Newest first; ``partner_id`` None lists every partner's (and the partnerless) records."""
    args = (
        partner_id,
        wanted.action,
        wanted.actor,
        wanted.since,
        wanted.until,
    )
    rows = await pool.fetch(Q["list_audit_events"], *args, wanted.offset, wanted.limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_audit_events"], *args)
    items = [
        AuditEvent.model_validate({k: v for k, v in row.items() if k != "total"}) for row in rows
    ]
    return AuditEventPage(items=items, offset=wanted.offset, limit=wanted.limit, total=total)


async def list_partner_audit_events(
    pool: Pool, wanted: AuditEventQuery, partner_id: uuid.UUID
) -> AuditEventPage:
    """One partner's records (the partner may have been deleted since: its history stays)."""
    page = await list_audit_events(pool, wanted, partner_id)
    if page.total == 0 and not await pool.fetchval(Q["audit_partner_exists"], partner_id):
        raise PartnerNotFound()
    return page


async def expire(pool: Pool, retention_days: float, batch: int) -> int:
    """Delete records past retention, at most ``batch`` of them; how many went."""
    deleted: int = await pool.fetchval(Q["expire_audit_events"], retention_days, batch)
    return deleted
