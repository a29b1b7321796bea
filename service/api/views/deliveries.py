"""The delivery log and redelivery."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import POOL
from service.api.auth import Caller
from service.api.parsing import json_body, path_uuid, query
from service.api.routes import route
from service.api.tokens import Scope
from service.core import deliveries
from service.core.schemas import (
    NotificationDetail,
    NotificationFilter,
    NotificationPage,
    RedeliverAccepted,
    RedeliverFailed,
    RedeliverFailedAccepted,
)

READ, WRITE = Scope.DELIVERIES_READ, Scope.DELIVERIES_WRITE
BASE = "/partners/{partnerUniqueID}/notifications"
# Any segment but "redeliver-failed", which is a path of its own: otherwise a GET or an OPTIONS
# there would match this pattern too, and 405 answers would list methods the path lacks.
ONE = BASE + "/{notificationId:(?!redeliver-failed$)[^/]+}"


@route(
    "GET",
    BASE,
    summary="The delivery log, newest first",
    tag="deliveries",
    scope=READ,
    query=NotificationFilter,
    response=NotificationPage,
    extra_statuses={404: "Unknown partner"},
)
async def list_notifications(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    wanted = query(request, NotificationFilter)
    page = await deliveries.list_notifications(request.app[POOL], partner_id, wanted)
    return web.json_response(page.dump())


@route(
    "GET",
    ONE,
    summary="One notification with payload and attempt log",
    tag="deliveries",
    scope=READ,
    response=NotificationDetail,
    extra_statuses={404: "Unknown partner or notification"},
)
async def get_notification(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_id = path_uuid(request, "notificationId")
    detail = await deliveries.get_notification(request.app[POOL], partner_id, notification_id)
    return web.json_response(detail.dump())


@route(
    "POST",
    ONE + "/redeliver",
    summary="Queue a notification again with a fresh attempt budget (same webhook-id)",
    tag="deliveries",
    scope=WRITE,
    response=RedeliverAccepted,
    status=202,
    extra_statuses={404: "Unknown notification", 409: "Callback disabled or delivery under way"},
)
async def redeliver(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_id = path_uuid(request, "notificationId")
    await deliveries.redeliver(request.app[POOL], partner_id, notification_id, caller.actor)
    return web.json_response(RedeliverAccepted(notification_id=notification_id).dump(), status=202)


@route(
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
async def redeliver_failed(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    body = await json_body(request, RedeliverFailed)
    queued = await deliveries.redeliver_failed(
        request.app[POOL], partner_id, body.since, caller.actor
    )
    return web.json_response(RedeliverFailedAccepted(queued=queued).dump(), status=202)
