"""The audit trail: every change of a partner's configuration, newest first."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import POOL
from service.api.auth import Caller
from service.api.parsing import query
from service.api.routes import route
from service.api.tokens import Scope
from service.core import audit
from service.core.schemas import AuditEventFilter, AuditEventPage, AuditEventQuery


@route(
    "GET",
    "/audit-events",
    summary="The audit trail of every partner (filters: partner, action, actor, time range)",
    tag="audit",
    scope=Scope.PARTNERS_ADMIN,
    query=AuditEventFilter,
    response=AuditEventPage,
)
async def list_audit_events(request: web.Request, caller: Caller) -> web.Response:
    wanted = query(request, AuditEventFilter)
    page = await audit.list_audit_events(request.app[POOL], wanted, wanted.partner_unique_id)
    return web.json_response(page.dump())


@route(
    "GET",
    "/partners/{partnerUniqueID}/audit-events",
    summary="The audit trail of one partner (a partner's own token may read it)",
    tag="audit",
    scope=Scope.CALLBACKS_READ,
    query=AuditEventQuery,
    response=AuditEventPage,
    extra_statuses={404: "Unknown partner"},
)
async def list_partner_audit_events(request: web.Request, caller: Caller) -> web.Response:
    wanted = query(request, AuditEventQuery)
    page = await audit.list_partner_audit_events(request.app[POOL], wanted, caller.partner_id)
    return web.json_response(page.dump())
