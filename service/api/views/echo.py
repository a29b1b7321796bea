"""Callback Echo: an internal service emits a notification for a partner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import ValidationError

from service.api.app_keys import NOTIFICATION_WRITER, SETTINGS
from service.api.auth import Caller
from service.api.parsing import field_errors, parse_json, path_int, read_json_body
from service.api.routes import route
from service.api.tokens import Scope
from service.core import tracing
from service.core.callbacks import ensure_supported_type
from service.core.errors import BadRequest, ValidationFailed
from service.core.metrics import notifications_accepted
from service.core.notification_types import NOTIFICATION_TYPES, subject_errors
from service.core.notifications import NewNotification, NotificationWriter
from service.core.schemas import EchoAccepted
from service.core.settings import Settings

EMIT = Scope.NOTIFICATIONS_EMIT
MAX_IDEMPOTENCY_KEY = 200


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    # isprintable() also refuses the surrogates aiohttp decodes non-UTF-8 header bytes to.
    if key is not None and not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable UTF-8 characters"
        )
    return key


def _payload_errors(error: ValidationError, data: object) -> list[dict[str, str]]:
    """Pydantic's errors, plus the subject rule even when other fields failed too (pydantic
    checks it only once every field is valid)."""
    errors = field_errors(error)
    named = {e["field"] for e in errors}
    for problem in subject_errors(data):
        if problem["field"] not in named:
            errors.append(problem)
    return errors


@route(
    "POST",
    "/partners/{partnerUniqueID}/callbacks/{notificationTypeID}/echo",
    summary="Callback Echo: queue a notification for delivery to the partner's callback",
    tag="notifications",
    scope=EMIT,
    raw_body=True,
    response=EchoAccepted,
    status=202,
    headers=("Idempotency-Key",),
    extra_statuses={
        404: "Unknown partner, or no callback for this type",
        409: "The callback is disabled, or the Idempotency-Key was used with another body",
        503: "The database is unavailable; nothing was stored",
    },
)
async def echo(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = path_int(request, "notificationTypeID")
    ensure_supported_type(notification_type)
    key = _idempotency_key(request)
    raw = await read_json_body(request)
    notification_id = await emit(request.config_dict, partner_id, notification_type, raw, key)
    return _accepted(notification_id)


async def emit(
    resources: Mapping[Any, Any],
    partner_id: UUID,
    notification_type: int,
    raw: bytes,
    key: str | None = None,
) -> UUID:
    """Validate ``raw`` as a payload of the type and store it for delivery: the one path of
    every notification (the portal's test notifications take it too). ``resources`` is the
    application's (``request.config_dict``)."""
    data = parse_json(raw)  # strict syntax checks: duplicate keys, NUL, depth, UTF-8
    try:
        payload = NOTIFICATION_TYPES[notification_type].model_validate_json(raw)
    except ValidationError as error:
        raise ValidationFailed(errors=_payload_errors(error, data)) from None
    trace_context = tracing.current_context() if tracing.enabled() else None
    notification = NewNotification(
        partner_id, notification_type, payload.subject, raw, key, trace_context
    )
    writer: NotificationWriter = resources[NOTIFICATION_WRITER]
    settings: Settings = resources[SETTINGS]
    accepted = await writer.accept(notification)
    partner_label = str(partner_id) if settings.metrics_per_partner else ""
    notifications_accepted(notification_type, partner_label, accepted.replay).inc()
    return accepted.notification_id


def _accepted(notification_id: UUID) -> web.Response:
    """The ``EchoAccepted`` document, written out directly: the hot path's answer costs a third
    of building the model and serialising it (the tests check both agree)."""
    body = b'{"notificationId": "%s", "status": "queued"}' % str(notification_id).encode()
    return web.Response(body=body, status=202, content_type="application/json")
