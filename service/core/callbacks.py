"""Callbacks: one URL per partner and notification type, with the secret that signs deliveries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

import sql
from service.core import audit, delivery_options, operator_events
from service.core.audit import Actor, AuditAction
from service.core.callback_health import disable_callbacks, health
from service.core.database import Pool, retry_on_conflict
from service.core.delivery_options import (
    Credentials,
    DeliveryOptions,
    open_credentials,
    seal_credentials,
    with_signing_secret,
)
from service.core.encryption import Keyring
from service.core.errors import CallbackNotFound, Conflict, PartnerNotFound, ValidationFailed
from service.core.notification_types import ORDERED_BY_DEFAULT, payload_model, type_name
from service.core.ordering import lock_partner_subjects
from service.core.partners import ensure_partner
from service.core.schemas import (
    Callback,
    CallbackCreated,
    CallbackPage,
    CallbackUpdate,
    OAuth2ClientCredentials,
    SigningSecret,
)
from service.core.settings import Settings
from service.core.signing import ED25519, HMAC, new_signing_secret, public_key
from service.core.statuses import DisabledReason
from service.core.stored_secrets import callback_row
from service.core.url_guard import UrlRejected, check_url_destination, check_url_syntax

Q = sql.load_queries("callbacks")


def ensure_supported_type(notification_type: int) -> None:
    if payload_model(notification_type) is None:
        message = f"notification type {notification_type} is not supported"
        raise ValidationFailed(message, errors=[{"field": "notificationType", "message": message}])


def _callback(row: asyncpg.Record | dict[str, Any]) -> Callback:
    options = DeliveryOptions.from_json(row["delivery_options"])
    return Callback(
        partner_unique_id=row["partner_id"],
        notification_type=row["notification_type"],
        notification_type_name=type_name(row["notification_type"]),
        url=row["url"],
        enabled=row["enabled"],
        description=row["description"],
        ordered_delivery=row["ordered_delivery"],
        disabled_reason=row["disabled_reason"],
        headers=options.masked_headers(),
        auth=options.masked_auth(),
        tls=options.tls,
        signature=options.signature,
        public_key=options.public_key,
        max_in_flight=row["max_in_flight"],
        max_per_second=row["max_per_second"],
        health=health(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def vet_url(url: str, settings: Settings, field: str = "url") -> None:
    """The URL guard's verdict on a URL callbackhub will call, as a validation error on
    ``field`` (Callback Update and the portal's form both ask it)."""
    try:
        check_url_syntax(url, settings.require_https)
        await check_url_destination(url, settings.allowed_networks)
    except UrlRejected as error:
        raise ValidationFailed(errors=[{"field": field, "message": str(error)}]) from None


async def vet_destinations(update: CallbackUpdate, settings: Settings) -> None:
    """The callback's URL and, for OAuth2, its token endpoint: both pass the URL guard."""
    await vet_url(update.url, settings)
    if isinstance(update.auth, OAuth2ClientCredentials):
        await vet_url(update.auth.token_url, settings, "auth.tokenUrl")


# The columns an update can change, by the names the API and the audit trail use.
_AUDITED = {
    "url": "url",
    "enabled": "enabled",
    "description": "description",
    "ordered_delivery": "orderedDelivery",
    "delivery_options": "deliveryOptions",  # header names, auth type, signature: no secrets
    "max_in_flight": "maxInFlight",
    "max_per_second": "maxPerSecond",
}


@retry_on_conflict
async def upsert_callback(
    pool: Pool,
    keyring: Keyring,
    partner_id: uuid.UUID,
    notification_type: int,
    update: CallbackUpdate,
    actor: Actor,
    overlap_seconds: float,
) -> tuple[Callback, bool]:
    """Create or update the callback; returns it and whether it was created.

    Disabling it fails its pending notifications (they can be redelivered once it is enabled).
    Changing its signature kind rotates to a key of the new kind, with the usual overlap.
    """
    ensure_supported_type(notification_type)
    async with pool.acquire() as connection, connection.transaction():
        before = await connection.fetchrow(Q["lock_callback"], partner_id, notification_type)
        opened = _credentials_before(keyring, before, partner_id, notification_type)
        options, credentials = _options_after(before, opened, update)
        kind = options.signature
        current = DeliveryOptions.from_json(before["delivery_options"]) if before else None
        # A new key only for a new callback or a change of kind; an update keeps its key (the
        # insert's value is then unused: the conflict branch never touches signing_secret).
        secret = new_signing_secret(kind) if current is None or current.signature != kind else None
        sealed = before["signing_secret"] if before is not None else None
        if before is None:
            assert secret is not None
            options = with_signing_secret(options, secret)
            sealed = keyring.seal(secret, callback_row(partner_id, notification_type))
        try:
            row = await connection.fetchrow(
                Q["upsert_callback"],
                partner_id,
                notification_type,
                update.url,
                update.enabled,
                update.description,
                update.ordered_delivery,
                notification_type in ORDERED_BY_DEFAULT,
                sealed,
                options.as_json(),
                seal_credentials(keyring, credentials, partner_id, notification_type),
                update.max_in_flight,
                update.max_per_second,
                "max_in_flight" in update.model_fields_set,
                "max_per_second" in update.model_fields_set,
            )
        except asyncpg.ForeignKeyViolationError:
            raise PartnerNotFound() from None
        assert row is not None
        if before is not None and secret is not None:  # the kind changed: rotate to it
            rotation = Rotation(partner_id, notification_type, overlap_seconds, secret)
            await _rotate(connection, keyring, rotation, actor)
            row = dict(row) | dict(
                await get_callback_row(connection, partner_id, notification_type)
            )
        if not update.enabled and not row["created"]:
            await disable_callbacks(connection, [row["id"]], DisabledReason.DISABLED_BY_USER)
            disabled = await get_callback_row(connection, partner_id, notification_type)
            row = dict(row) | dict(disabled)
        await _audit_upsert(connection, actor, before, row, _secrets_changed(opened, credentials))
    if row["created"]:
        shown = secret if kind == HMAC else None  # an ed25519 private key never leaves
        return CallbackCreated(**_callback(row).model_dump(), signing_secret=shown), True
    return _callback(row), False


def _secrets_changed(before: Credentials, after: Credentials) -> list[str]:
    """Which secret parts an update changed, named but never shown."""
    changed = []
    if before.headers != after.headers:
        changed.append("headerValues")
    if before.authorization != after.authorization:
        changed.append("authorization")
    return changed


def _credentials_before(
    keyring: Keyring, before: asyncpg.Record | None, partner_id: uuid.UUID, notification_type: int
) -> Credentials:
    if before is None:
        return Credentials()
    return open_credentials(keyring, before["sealed_credentials"], partner_id, notification_type)


def _options_after(
    before: asyncpg.Record | None, opened: Credentials, update: CallbackUpdate
) -> tuple[DeliveryOptions, Credentials]:
    current = DeliveryOptions.from_json(before["delivery_options"] if before else None)
    return delivery_options.updated(current, opened, update)


async def _audit_upsert(
    connection: asyncpg.Connection,
    actor: Actor,
    before: asyncpg.Record | None,
    after: asyncpg.Record | dict[str, Any],
    secrets_changed: list[str],
) -> None:
    partner_id, notification_type = after["partner_id"], after["notification_type"]
    event = {"url": after["url"], "actor": actor.subject}
    if before is None:
        fields = {api_name: after[column] for column, api_name in _AUDITED.items()}
        await audit.record(
            connection, actor, AuditAction.CALLBACK_CREATED, partner_id, notification_type, fields
        )
        await operator_events.emit(
            connection, "callback.created", partner_id, notification_type, event
        )
        return
    changes = audit.changed_fields(before, after, _AUDITED)
    await audit.record(
        connection,
        actor,
        AuditAction.CALLBACK_UPDATED,
        partner_id,
        notification_type,
        {"changes": changes} | ({"secretsChanged": secrets_changed} if secrets_changed else {}),
    )
    await operator_events.emit(connection, "callback.updated", partner_id, notification_type, event)
    if "enabled" in changes:
        action = AuditAction.CALLBACK_ENABLED if after["enabled"] else AuditAction.CALLBACK_DISABLED
        details = {} if after["enabled"] else {"reason": DisabledReason.DISABLED_BY_USER.value}
        await audit.record(connection, actor, action, partner_id, notification_type, details)
        if after["enabled"]:  # a disable's event comes with the disable (disable_callbacks)
            await operator_events.emit(
                connection,
                "callback.enabled",
                partner_id,
                notification_type,
                {"actor": actor.subject},
            )


async def get_callback_row(
    connection: asyncpg.Connection | Pool, partner_id: uuid.UUID, notification_type: int
) -> asyncpg.Record:
    row = await connection.fetchrow(Q["get_callback"], partner_id, notification_type)
    if row is None:
        await ensure_partner(connection, partner_id)
        raise CallbackNotFound()
    return row


async def get_callback(pool: Pool, partner_id: uuid.UUID, notification_type: int) -> Callback:
    return _callback(await get_callback_row(pool, partner_id, notification_type))


async def reveal_signing_secret(
    pool: Pool, keyring: Keyring, partner_id: uuid.UUID, notification_type: int, actor: Actor
) -> str:
    """The signing secret in clear; that it was revealed, and to whom, goes in the audit trail.
    An ed25519 callback has none to reveal: its private key never leaves callbackhub."""
    async with pool.acquire() as connection, connection.transaction():
        row = await get_callback_row(connection, partner_id, notification_type)
        if DeliveryOptions.from_json(row["delivery_options"]).signature == ED25519:
            raise Conflict(
                "this callback signs with ed25519: verify with the publicKey of the callback; "
                "its private key never leaves callbackhub"
            )
        await audit.record(
            connection, actor, AuditAction.SECRET_REVEALED, partner_id, notification_type
        )
    return keyring.open(row["signing_secret"], callback_row(partner_id, notification_type))


async def list_callbacks(
    pool: Pool, partner_id: uuid.UUID, offset: int, limit: int
) -> CallbackPage:
    await ensure_partner(pool, partner_id)
    rows = await pool.fetch(Q["list_callbacks"], partner_id, offset, limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_callbacks"], partner_id)
    return CallbackPage(items=[_callback(r) for r in rows], offset=offset, limit=limit, total=total)


@retry_on_conflict
async def delete_callback(
    pool: Pool, partner_id: uuid.UUID, notification_type: int, actor: Actor
) -> None:
    """Delete the callback; its pending notifications are cancelled."""
    async with pool.acquire() as connection, connection.transaction():
        row = await get_callback_row(connection, partner_id, notification_type)
        await lock_partner_subjects(connection, partner_id, row["id"])
        await connection.execute(Q["cancel_callback_deliveries"], row["id"])
        await connection.execute(Q["delete_callback"], row["id"])
        await audit.record(
            connection,
            actor,
            AuditAction.CALLBACK_DELETED,
            partner_id,
            notification_type,
            {"url": row["url"]},
        )
        await operator_events.emit(
            connection,
            "callback.deleted",
            partner_id,
            notification_type,
            {"url": row["url"], "actor": actor.subject},
        )


@dataclass(frozen=True)
class Rotation:
    partner_id: uuid.UUID
    notification_type: int
    overlap_seconds: float
    secret: str  # the new one, of the kind that signs from now on


async def _rotate(
    connection: asyncpg.Connection, keyring: Keyring, rotation: Rotation, actor: Actor
) -> None:
    """The new secret signs; the old one keeps signing next to it for the overlap."""
    partner_id, notification_type = rotation.partner_id, rotation.notification_type
    sealed = keyring.seal(rotation.secret, callback_row(partner_id, notification_type))
    signs = with_signing_secret(DeliveryOptions(), rotation.secret)
    patch = {"signature": signs.signature, "publicKey": signs.public_key}
    expires_at = await connection.fetchval(
        Q["rotate_secret"], partner_id, notification_type, rotation.overlap_seconds, sealed, patch
    )
    if expires_at is None:
        await get_callback_row(connection, partner_id, notification_type)
    await audit.record(
        connection,
        actor,
        AuditAction.SECRET_ROTATED,
        partner_id,
        notification_type,
        {"previousSecretExpiresAt": expires_at.isoformat(), "signature": signs.signature},
    )
    await operator_events.emit(
        connection,
        "callback.secret_rotated",
        partner_id,
        notification_type,
        {"previousSecretExpiresAt": operator_events.api_time(expires_at), "actor": actor.subject},
    )


async def rotate_signing_secret(
    pool: Pool,
    keyring: Keyring,
    partner_id: uuid.UUID,
    notification_type: int,
    overlap_seconds: float,
    actor: Actor,
) -> SigningSecret:
    """A new secret of the callback's kind; the old one keeps signing next to it for
    ``overlap_seconds``. An ed25519 callback shows only its new public key."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(Q["lock_callback"], partner_id, notification_type)
        if row is None:
            await get_callback_row(connection, partner_id, notification_type)  # raises
        assert row is not None
        kind = DeliveryOptions.from_json(row["delivery_options"]).signature
        secret = new_signing_secret(kind)
        rotation = Rotation(partner_id, notification_type, overlap_seconds, secret)
        await _rotate(connection, keyring, rotation, actor)
    if kind == HMAC:
        return SigningSecret(signing_secret=secret)
    return SigningSecret(signing_secret=None, public_key=public_key(secret))
