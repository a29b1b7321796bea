"""The Callbacks page, one callback's page (its settings, its secret, deleting it) and sending
a test notification: each action calls the domain function the JSON API calls."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from service.api.app_keys import KEYRING, POOL, SETTINGS
from service.api.parsing import validate
from service.api.views.echo import emit
from service.core import callbacks, delivery_stats
from service.core.errors import CallbackNotFound, Problem, ValidationFailed
from service.core.examples import example_payload
from service.core.notification_types import NOTIFICATION_TYPES, ORDERED_BY_DEFAULT
from service.core.schemas import Callback, CallbackUpdate
from service.portal.chart import hourly_chart
from service.portal.pages.common import (
    TYPE_NAMES,
    actor_of,
    notification_type_of,
    partner_id_of,
    partner_of,
    text_field,
)
from service.portal.rendering import render

routes = web.RouteTableDef()
NOTICES = {
    "saved": "Saved.",
    "registered": "Registered. Reveal the signing secret below to set up your receiver.",
    "deleted": "The callback was deleted.",
}


@routes.get("/", name="callbacks")
async def callbacks_page(request: web.Request) -> web.StreamResponse:
    pool, partner_id = request.config_dict[POOL], partner_id_of(request)
    overview = await delivery_stats.callback_overview(pool, partner_id)
    hours = await delivery_stats.hourly_outcomes(pool, partner_id)
    rows = [
        {"type": t, "name": TYPE_NAMES[t], "callback": overview.get(t)}
        for t in sorted(NOTIFICATION_TYPES)
    ]
    return render(
        request,
        "callbacks.html",
        title="Callbacks",
        partner=await partner_of(request),
        rows=rows,
        chart=hourly_chart(hours),
        notice=NOTICES.get(request.query.get("done", "")),
    )


async def _callback_or_none(request: web.Request, notification_type: int) -> Callback | None:
    try:
        return await callbacks.get_callback(
            request.config_dict[POOL], partner_id_of(request), notification_type
        )
    except CallbackNotFound:
        return None


def _form_of(callback: Callback | None, notification_type: int) -> dict[str, Any]:
    if callback is None:
        ordered = notification_type in ORDERED_BY_DEFAULT
        return {
            "url": "",
            "description": "",
            "enabled": True,
            "ordered_delivery": ordered,
            "max_in_flight": None,
            "max_per_second": None,
        }
    return {
        "url": callback.url,
        "description": callback.description,
        "enabled": callback.enabled,
        "ordered_delivery": callback.ordered_delivery,
        "max_in_flight": callback.max_in_flight,
        "max_per_second": callback.max_per_second,
    }


# Validation errors name fields as the API does (maxInFlight); the form's fields are named as
# the model's (max_in_flight).
FORM_FIELD_OF = {info.alias or name: name for name, info in CallbackUpdate.model_fields.items()}


def _overlap(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{seconds:g} seconds"


async def _callback_page(
    request: web.Request,
    notification_type: int,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
    notice: str | None = None,
) -> web.Response:
    callback = await _callback_or_none(request, notification_type)
    return render(
        request,
        "callback.html",
        status=status,
        title=TYPE_NAMES[notification_type],
        partner=await partner_of(request),
        notification_type=notification_type,
        type_name=TYPE_NAMES[notification_type],
        callback=callback,
        form=form or _form_of(callback, notification_type),
        errors=errors or {},
        secret=secret,
        overlap=_overlap(request.config_dict[SETTINGS].secret_rotation_overlap),
        default_max_in_flight=request.config_dict[SETTINGS].max_per_callback,
        notice=notice or NOTICES.get(request.query.get("done", "")),
    )


@routes.get("/callbacks/{notification_type}", name="callback")
async def callback_page(request: web.Request) -> web.StreamResponse:
    return await _callback_page(request, notification_type_of(request))


@routes.post("/callbacks/{notification_type}")
async def save_callback(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    posted = await request.post()
    form = {
        "url": text_field(posted, "url").strip(),
        "description": text_field(posted, "description").strip() or None,
        "enabled": posted.get("enabled") == "on",
        "ordered_delivery": posted.get("ordered_delivery") == "on",
        # Empty: the service default (maxInFlight), no rate limit (maxPerSecond).
        "max_in_flight": text_field(posted, "max_in_flight").strip() or None,
        "max_per_second": text_field(posted, "max_per_second").strip() or None,
    }
    try:
        update = validate(CallbackUpdate, form)
        await callbacks.vet_destinations(update, request.config_dict[SETTINGS])
        _, created = await callbacks.upsert_callback(
            request.config_dict[POOL],
            request.config_dict[KEYRING],
            partner_id_of(request),
            notification_type,
            update,
            actor_of(request),
            request.config_dict[SETTINGS].secret_rotation_overlap,
        )
    except ValidationFailed as error:
        errors = {
            FORM_FIELD_OF.get(e["field"], e["field"]): e["message"] for e in error.errors or []
        }
        return await _callback_page(
            request, notification_type, status=400, form=form, errors=errors
        )
    done = "registered" if created else "saved"
    url = request.app.router["callback"].url_for(notification_type=str(notification_type))
    raise web.HTTPSeeOther(url.with_query(done=done))


@routes.post("/callbacks/{notification_type}/secret", name="reveal_secret")
async def reveal_secret(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    secret = await callbacks.reveal_signing_secret(
        request.config_dict[POOL],
        request.config_dict[KEYRING],
        partner_id_of(request),
        notification_type,
        actor_of(request),
    )
    return await _callback_page(request, notification_type, secret=secret)


@routes.post("/callbacks/{notification_type}/secret/rotate", name="rotate_secret")
async def rotate_secret(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    overlap = request.config_dict[SETTINGS].secret_rotation_overlap
    rotated = await callbacks.rotate_signing_secret(
        request.config_dict[POOL],
        request.config_dict[KEYRING],
        partner_id_of(request),
        notification_type,
        overlap,
        actor_of(request),
    )
    secret = rotated.signing_secret
    notice = (
        f"Rotated. Requests are now signed with the new secret, and for {_overlap(overlap)} "
        "with the previous one too."
    )
    return await _callback_page(request, notification_type, secret=secret, notice=notice)


@routes.post("/callbacks/{notification_type}/delete", name="delete_callback")
async def delete_callback(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    await callbacks.delete_callback(
        request.config_dict[POOL], partner_id_of(request), notification_type, actor_of(request)
    )
    raise web.HTTPSeeOther(request.app.router["callbacks"].url_for().with_query(done="deleted"))


@routes.get("/callbacks/{notification_type}/test", name="test_notification")
async def test_notification_form(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    payload = json.dumps(example_payload(notification_type), indent=2)
    return _test_page(request, notification_type, payload, [])


def _test_page(
    request: web.Request,
    notification_type: int,
    payload: str,
    errors: list[dict[str, str]],
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "test_notification.html",
        status=status,
        title="Send a test notification",
        partner=None,
        notification_type=notification_type,
        type_name=TYPE_NAMES[notification_type],
        payload=payload,
        errors=errors,
    )


@routes.post("/callbacks/{notification_type}/test")
async def send_test_notification(request: web.Request) -> web.StreamResponse:
    notification_type = notification_type_of(request)
    payload = text_field(await request.post(), "payload")
    partner_id = partner_id_of(request)
    try:
        # The emitters' own path: same validation, same storage, same delivery.
        notification_id = await emit(
            request.config_dict, partner_id, notification_type, payload.encode()
        )
    except Problem as error:  # invalid JSON or payload, no callback, callback disabled
        errors = error.errors or [{"field": "payload", "message": error.detail}]
        return _test_page(request, notification_type, payload, errors, status=error.status)
    url = request.app.router["notification"].url_for(notification_id=str(notification_id))
    raise web.HTTPSeeOther(url)
