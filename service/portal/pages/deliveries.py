"""Deliveries: the log with filters and paging, one notification with its payload, the headers
each attempt sent and what came back, and redelivery."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from service.api.app_keys import POOL
from service.api.parsing import validate
from service.core import deliveries
from service.core.errors import NotificationNotFound, ValidationFailed
from service.core.runtime import package_version
from service.core.schemas import Attempt, NotificationDetail, NotificationFilter, NotificationPage
from service.core.statuses import DeliveryStatus
from service.portal.pages.common import (
    TYPE_NAMES,
    actor_of,
    offset_of,
    paging,
    partner_id_of,
    partner_of,
    text_field,
)
from service.portal.rendering import render

routes = web.RouteTableDef()
PAGE = 25
FILTERS = ("status", "notification_type", "since", "until", "subject")


def _day(raw: str, *, end: bool) -> datetime | None:
    """A date field as a UTC time: the start of that day, or (``end``) of the next one."""
    if not raw:
        return None
    day = date.fromisoformat(raw)
    return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)


def _filter(request: web.Request, filters: dict[str, str]) -> NotificationFilter:
    try:
        since, until = _day(filters["since"], end=False), _day(filters["until"], end=True)
    except ValueError:
        raise ValidationFailed(errors=[{"field": "date", "message": "not a date"}]) from None
    wanted: dict[str, Any] = {
        "status": filters["status"] or None,
        "notification_type": filters["notification_type"] or None,
        "subject": filters["subject"] or None,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "offset": offset_of(request),
        "limit": PAGE,
    }
    return validate(NotificationFilter, wanted)


@routes.get("/notifications", name="notifications")
async def notifications_page(request: web.Request) -> web.StreamResponse:
    filters = {name: request.query.get(name, "").strip() for name in FILTERS}
    errors: list[dict[str, str]] = []
    try:
        wanted = _filter(request, filters)
        page = await deliveries.list_notifications(
            request.config_dict[POOL], partner_id_of(request), wanted
        )
    except ValidationFailed as error:
        errors = error.errors or []
        page = NotificationPage(items=[], offset=0, limit=PAGE, total=0)
    return render(
        request,
        "notifications.html",
        status=400 if errors else 200,
        title="Deliveries",
        partner=await partner_of(request),
        page=page,
        filters=filters,
        errors=errors,
        statuses=[status.value for status in DeliveryStatus],
        types=sorted(TYPE_NAMES.items()),
        type_names=TYPE_NAMES,
        default_since=(datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
        **paging(request, page.offset, PAGE, page.total),
    )


def _notification_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["notification_id"])
    except ValueError:
        raise NotificationNotFound() from None


def sent_headers(detail: NotificationDetail, attempt: Attempt) -> list[tuple[str, str]]:
    """The headers the attempt carried: the signature as stored with it, the rest as the
    dispatcher builds them (webhook-timestamp is the attempt's start, in seconds)."""
    headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", f"callbackhub/{package_version()}"),
        ("notification-type-id", str(detail.notification_type)),
        ("webhook-id", str(detail.notification_id)),
        ("webhook-timestamp", str(int(attempt.started_at.timestamp()))),
    ]
    if attempt.signature is not None:
        headers.append(("webhook-signature", attempt.signature))
    headers.append(("webhook-sequence", str(detail.sequence)))
    return headers


@routes.get("/notifications/{notification_id}", name="notification")
async def notification_page(request: web.Request) -> web.StreamResponse:
    detail = await deliveries.get_notification(
        request.config_dict[POOL], partner_id_of(request), _notification_id(request)
    )
    return render(
        request,
        "notification.html",
        title="Notification",
        partner=await partner_of(request),
        detail=detail,
        type_names=TYPE_NAMES,
        headers=lambda attempt: sent_headers(detail, attempt),
        notice="Queued again." if request.query.get("done") == "redelivered" else None,
    )


@routes.post("/notifications/{notification_id}/redeliver", name="redeliver")
async def redeliver(request: web.Request) -> web.StreamResponse:
    notification_id = _notification_id(request)
    await deliveries.redeliver(
        request.config_dict[POOL], partner_id_of(request), notification_id, actor_of(request)
    )
    url = request.app.router["notification"].url_for(notification_id=str(notification_id))
    raise web.HTTPSeeOther(url.with_query(done="redelivered"))


@routes.post("/notifications/redeliver-failed", name="redeliver_failed")
async def redeliver_failed(request: web.Request) -> web.StreamResponse:
    try:
        since = _day(text_field(await request.post(), "since"), end=False)
    except ValueError:
        since = None
    if since is None:
        raise ValidationFailed(errors=[{"field": "since", "message": "a date is required"}])
    queued = await deliveries.redeliver_failed(
        request.config_dict[POOL], partner_id_of(request), since, actor_of(request)
    )
    return render(
        request,
        "message.html",
        title="Redeliver failed",
        partner=await partner_of(request),
        message=f"{queued} failed notification{'' if queued == 1 else 's'} since "
        f"{since.date().isoformat()} queued again.",
    )
