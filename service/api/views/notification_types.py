"""The notification type catalogue: every type with its payload schema (any valid token)."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import Caller
from service.api.routes import route
from service.core.notification_types import NOTIFICATION_TYPES, payload_schema
from service.core.schemas import NotificationTypeInfo, NotificationTypeList


@route(
    "GET",
    "/notification-types",
    summary="The notification types and their payload schemas",
    tag="notification types",
    response=NotificationTypeList,
)
async def list_notification_types(request: web.Request, caller: Caller) -> web.Response:
    items = [
        NotificationTypeInfo(id=type_id, name=model.__name__, schema_=payload_schema(type_id))
        for type_id, model in sorted(NOTIFICATION_TYPES.items())
    ]
    return web.json_response(NotificationTypeList(items=items).dump())
