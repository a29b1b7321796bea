"""Callback Update, Delete, List, Get and the signing secret."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import KEYRING, POOL, SETTINGS
from service.api.auth import Caller
from service.api.parsing import json_body, path_int, query
from service.api.routes import route
from service.api.tokens import Scope
from service.core import callbacks
from service.core.schemas import (
    Callback,
    CallbackCreated,
    CallbackPage,
    CallbackUpdate,
    Pagination,
    SigningSecret,
)

READ, WRITE = Scope.CALLBACKS_READ, Scope.CALLBACKS_WRITE
ONE = "/partners/{partnerUniqueID}/callbacks/{notificationType}"


def _notification_type(request: web.Request) -> int:
    notification_type = path_int(request, "notificationType")
    callbacks.ensure_supported_type(notification_type)
    return notification_type


@route(
    "PUT",
    ONE,
    summary="Callback Update: register or change the URL for a notification type",
    tag="callbacks",
    scope=WRITE,
    body=CallbackUpdate,
    response=Callback,
    status_models={201: CallbackCreated},
    extra_statuses={201: "Created; the body also holds signingSecret", 404: "Unknown partner"},
)
async def update_callback(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = _notification_type(request)
    update = await json_body(request, CallbackUpdate)
    settings = request.app[SETTINGS]
    await callbacks.vet_destinations(update, settings)
    callback, created = await callbacks.upsert_callback(
        request.app[POOL],
        request.app[KEYRING],
        partner_id,
        notification_type,
        update,
        caller.actor,
        settings.secret_rotation_overlap,
    )
    return web.json_response(callback.dump(), status=201 if created else 200)


@route(
    "DELETE",
    ONE,
    summary="Callback Delete (cancels its pending notifications)",
    tag="callbacks",
    scope=WRITE,
    status=204,
    extra_statuses={404: "No such callback"},
)
async def delete_callback(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = _notification_type(request)
    await callbacks.delete_callback(request.app[POOL], partner_id, notification_type, caller.actor)
    return web.Response(status=204)


@route(
    "GET",
    "/partners/{partnerUniqueID}/callbacks",
    summary="Callback List",
    tag="callbacks",
    scope=READ,
    query=Pagination,
    response=CallbackPage,
    extra_statuses={404: "Unknown partner"},
)
async def list_callbacks(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    page = query(request, Pagination)
    result = await callbacks.list_callbacks(request.app[POOL], partner_id, page.offset, page.limit)
    return web.json_response(result.dump())


@route(
    "GET",
    ONE,
    summary="Get one callback",
    tag="callbacks",
    scope=READ,
    response=Callback,
    extra_statuses={404: "No such callback"},
)
async def get_callback(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = _notification_type(request)
    callback = await callbacks.get_callback(request.app[POOL], partner_id, notification_type)
    return web.json_response(callback.dump())


@route(
    "GET",
    ONE + "/secret",
    summary="The callback's signing secret (recorded in the audit trail; 409 for ed25519)",
    tag="callbacks",
    scope=WRITE,
    response=SigningSecret,
    extra_statuses={
        404: "No such callback",
        409: "The callback signs with ed25519: verify with its publicKey",
    },
)
async def get_secret(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = _notification_type(request)
    secret = await callbacks.reveal_signing_secret(
        request.app[POOL], request.app[KEYRING], partner_id, notification_type, caller.actor
    )
    return web.json_response(SigningSecret(signing_secret=secret).dump())


@route(
    "POST",
    ONE + "/secret/rotate",
    summary="Rotate the signing secret; the old one also signs for 24 h",
    tag="callbacks",
    scope=WRITE,
    response=SigningSecret,
    extra_statuses={404: "No such callback"},
)
async def rotate_secret(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    notification_type = _notification_type(request)
    settings = request.app[SETTINGS]
    rotated = await callbacks.rotate_signing_secret(
        request.app[POOL],
        request.app[KEYRING],
        partner_id,
        notification_type,
        settings.secret_rotation_overlap,
        caller.actor,
    )
    return web.json_response(rotated.dump())
