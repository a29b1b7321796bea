"""The operator webhook and the operational events it receives (scope partners:admin)."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import KEYRING, POOL, SETTINGS
from service.api.auth import Caller
from service.api.parsing import json_body, path_uuid, query
from service.api.routes import route
from service.api.tokens import Scope
from service.core import operator_events, operator_webhook
from service.core.callbacks import vet_url
from service.core.schemas import (
    OperatorEvent,
    OperatorEventFilter,
    OperatorEventPage,
    OperatorWebhook,
    OperatorWebhookCreated,
    OperatorWebhookUpdate,
    SigningSecret,
)

ADMIN = Scope.PARTNERS_ADMIN
WEBHOOK = "/operator/webhook"
EVENT = "/operator/events/{operatorEventId}"


@route(
    "PUT",
    WEBHOOK,
    summary="Register or change the operator webhook, where operational events go",
    tag="operator",
    scope=ADMIN,
    body=OperatorWebhookUpdate,
    response=OperatorWebhook,
    status_models={201: OperatorWebhookCreated},
    extra_statuses={201: "Created; the body also holds signingSecret"},
)
async def put_operator_webhook(request: web.Request, caller: Caller) -> web.Response:
    update = await json_body(request, OperatorWebhookUpdate)
    await vet_url(update.url, request.app[SETTINGS])
    webhook, created = await operator_webhook.put_webhook(
        request.app[POOL], request.app[KEYRING], update, caller.actor
    )
    return web.json_response(webhook.dump(), status=201 if created else 200)


@route(
    "GET",
    WEBHOOK,
    summary="The operator webhook",
    tag="operator",
    scope=ADMIN,
    response=OperatorWebhook,
    extra_statuses={404: "No operator webhook is registered"},
)
async def get_operator_webhook(request: web.Request, caller: Caller) -> web.Response:
    webhook = await operator_webhook.get_webhook(request.app[POOL])
    return web.json_response(webhook.dump())


@route(
    "DELETE",
    WEBHOOK,
    summary="Delete the operator webhook (events still to be sent fail)",
    tag="operator",
    scope=ADMIN,
    status=204,
    extra_statuses={404: "No operator webhook is registered"},
)
async def delete_operator_webhook(request: web.Request, caller: Caller) -> web.Response:
    await operator_webhook.delete_webhook(request.app[POOL], caller.actor)
    return web.Response(status=204)


@route(
    "POST",
    WEBHOOK + "/secret/rotate",
    summary="A new signing secret; the previous one keeps signing for the rotation overlap",
    tag="operator",
    scope=ADMIN,
    response=SigningSecret,
    extra_statuses={404: "No operator webhook is registered"},
)
async def rotate_operator_secret(request: web.Request, caller: Caller) -> web.Response:
    secret = await operator_webhook.rotate_secret(
        request.app[POOL],
        request.app[KEYRING],
        request.app[SETTINGS].secret_rotation_overlap,
        caller.actor,
    )
    return web.json_response(secret.dump(exclude_none=True))


@route(
    "GET",
    "/operator/events",
    summary="Operational events, newest first, with their attempts (filters: type, status)",
    tag="operator",
    scope=ADMIN,
    query=OperatorEventFilter,
    response=OperatorEventPage,
)
async def list_operator_events(request: web.Request, caller: Caller) -> web.Response:
    page = await operator_events.list_events(request.app[POOL], query(request, OperatorEventFilter))
    return web.json_response(page.dump())


@route(
    "GET",
    EVENT,
    summary="One operational event with its attempts",
    tag="operator",
    scope=ADMIN,
    response=OperatorEvent,
    extra_statuses={404: "No such event"},
)
async def get_operator_event(request: web.Request, caller: Caller) -> web.Response:
    event_id = path_uuid(request, "operatorEventId")
    event = await operator_events.get_event(request.app[POOL], event_id)
    return web.json_response(event.dump())


@route(
    "POST",
    EVENT + "/redeliver",
    summary="Queue an operational event again with a fresh round of attempts (same webhook-id)",
    tag="operator",
    scope=ADMIN,
    response=OperatorEvent,
    status=202,
    extra_statuses={404: "No such event", 409: "The event is still queued or being delivered"},
)
async def redeliver_operator_event(request: web.Request, caller: Caller) -> web.Response:
    event_id = path_uuid(request, "operatorEventId")
    event = await operator_events.redeliver(request.app[POOL], event_id, caller.actor)
    return web.json_response(event.dump(), status=202)
