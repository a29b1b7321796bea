"""The delivery log and redelivery."""

from __future__ import annotations

from aiohttp import web

from service import deliveries
from service.access import authorize_partner
from service.endpoints import endpoint
from service.keys import POOL
from service.problems import json_body, path_uuid, query
from service.schemas import (
    NotificationDetail,
    NotificationFilter,
    NotificationPage,
    RedeliverAccepted,
    RedeliverFailed,
    RedeliverFailedAccepted,
)

READ, WRITE = "deliveries:read", "deliveries:write"
BASE = "/partners/{partnerUniqueID}/notifications"


@endpoint(
    "GET",
    BASE,
    summary="The delivery log, newest first",
    tag="deliveries",
    scope=READ,
    query=NotificationFilter,
    response=NotificationPage,
    extra_statuses={404: "Unknown partner"},
)
async def list_notifications(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, READ)
    wanted = query(request, NotificationFilter)
    page = await deliveries.list_notifications(request.app[POOL], partner_id, wanted)
    return web.json_response(page.dump())


@endpoint(
    "GET",
    BASE + "/{notificationId}",
    summary="One notification with payload and attempt log",
    tag="deliveries",
    scope=READ,
    response=NotificationDetail,
    extra_statuses={404: "Unknown partner or notification"},
)
async def get_notification(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, READ)
    notification_id = path_uuid(request, "notificationId")
    detail = await deliveries.get_notification(request.app[POOL], partner_id, notification_id)
    return web.json_response(detail.dump())


@endpoint(
    "POST",
    BASE + "/{notificationId}/redeliver",
    summary="Queue a notification again with a fresh attempt budget (same webhook-id)",
    tag="deliveries",
    scope=WRITE,
    response=RedeliverAccepted,
    status=202,
    extra_statuses={404: "Unknown notification", 409: "Callback disabled or delivery under way"},
)
async def redeliver(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, WRITE)
    notification_id = path_uuid(request, "notificationId")
    await deliveries.redeliver(request.app[POOL], partner_id, notification_id)
    return web.json_response(RedeliverAccepted(notification_id=notification_id).dump(), status=202)


@endpoint(
    "POST",
    BASE + "/redeliver-failed",
    summary="Queue again every failed notification since a time",
    tag="deliveries",
    scope=WRITE,
    body=RedeliverFailed,
    response=RedeliverFailedAccepted,
    status=202,
    extra_statuses={404: "Unknown partner"},
)
async def redeliver_failed(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, WRITE)
    body = await json_body(request, RedeliverFailed)
    queued = await deliveries.redeliver_failed(request.app[POOL], partner_id, body.since)
    return web.json_response(RedeliverFailedAccepted(queued=queued).dump(), status=202)
