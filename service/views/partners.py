"""Partner management (scope partners:admin) and the notification type catalogue."""

from __future__ import annotations

from aiohttp import web

from service import partners
from service.access import authenticate, authorize, authorize_partner
from service.endpoints import endpoint
from service.keys import POOL
from service.notification_types import NOTIFICATION_TYPES, payload_schema
from service.problems import json_body, query
from service.schemas import (
    NotificationTypeInfo,
    NotificationTypeList,
    Pagination,
    Partner,
    PartnerCreate,
    PartnerPage,
)

ADMIN = "partners:admin"


@endpoint(
    "POST",
    "/partners",
    summary="Create a partner",
    tag="partners",
    scope=ADMIN,
    body=PartnerCreate,
    response=Partner,
    status=201,
    extra_statuses={409: "A partner with this id exists"},
)
async def create_partner(request: web.Request) -> web.Response:
    authorize(request, ADMIN)
    body = await json_body(request, PartnerCreate)
    partner = await partners.create_partner(request.app[POOL], body.name, body.partner_unique_id)
    return web.json_response(partner.dump(), status=201)


@endpoint(
    "GET",
    "/partners",
    summary="List partners",
    tag="partners",
    scope=ADMIN,
    query=Pagination,
    response=PartnerPage,
)
async def list_partners(request: web.Request) -> web.Response:
    authorize(request, ADMIN)
    page = query(request, Pagination)
    result = await partners.list_partners(request.app[POOL], page.offset, page.limit)
    return web.json_response(result.dump())


@endpoint(
    "GET",
    "/partners/{partnerUniqueID}",
    summary="Get a partner",
    tag="partners",
    scope=ADMIN,
    response=Partner,
    extra_statuses={404: "Unknown partner"},
)
async def get_partner(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, ADMIN)
    partner = await partners.get_partner(request.app[POOL], partner_id)
    return web.json_response(partner.dump())


@endpoint(
    "DELETE",
    "/partners/{partnerUniqueID}",
    summary="Delete a partner and its callbacks",
    tag="partners",
    scope=ADMIN,
    status=204,
    extra_statuses={404: "Unknown partner"},
)
async def delete_partner(request: web.Request) -> web.Response:
    partner_id = authorize_partner(request, ADMIN)
    await partners.delete_partner(request.app[POOL], partner_id)
    return web.Response(status=204)


@endpoint(
    "GET",
    "/notification-types",
    summary="The notification types and their payload schemas",
    tag="notification types",
    response=NotificationTypeList,
)
async def list_notification_types(request: web.Request) -> web.Response:
    authenticate(request)
    items = [
        NotificationTypeInfo(id=type_id, name=model.__name__, schema_=payload_schema(type_id))
        for type_id, model in sorted(NOTIFICATION_TYPES.items())
    ]
    return web.json_response(NotificationTypeList(items=items).dump())
