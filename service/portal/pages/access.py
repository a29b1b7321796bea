"""Getting in and out: the link that opens a session, signing out, and the operator's list of
partners with a way into each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

from service.api.app_keys import POOL
from service.core import delivery_stats, portal_access
from service.core.portal_access import LinkUnusable
from service.portal.guard import cookie_is_secure
from service.portal.keys import COOKIE, SESSION_ID
from service.portal.pages.common import offset_of, paging, session_of
from service.portal.rendering import render, render_message

routes = web.RouteTableDef()
OPERATOR_PAGE = 50


@routes.get("/login", name="login")
async def login(request: web.Request) -> web.StreamResponse:
    code = request.query.get("code", "")
    try:
        session_id, session = await portal_access.open_link(request.config_dict[POOL], code)
    except LinkUnusable:
        return render_message(
            request,
            "Link not valid",
            "This portal link has been used already or has expired. Ask the platform for a "
            "new one.",
            status=403,
        )
    target = "operator" if session.operator else "callbacks"
    response = web.HTTPSeeOther(request.app.router[target].url_for())
    lifetime = int((session.expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max(lifetime, 0),
        path="/portal",
        httponly=True,
        samesite="Lax",
        secure=cookie_is_secure(request),
    )
    return response


@routes.post("/sign-out", name="sign_out")
async def sign_out(request: web.Request) -> web.StreamResponse:
    await portal_access.end_session(request.config_dict[POOL], request[SESSION_ID])
    response = render_message(
        request, "Signed out", "You are signed out. Open a new portal link to come back.", 200
    )
    response.del_cookie(COOKIE, path="/portal")
    return response


@routes.get("/operator", name="operator")
async def operator(request: web.Request) -> web.StreamResponse:
    offset = offset_of(request)
    items, total = await delivery_stats.partner_health(
        request.config_dict[POOL], offset, OPERATOR_PAGE
    )
    return render(
        request,
        "operator.html",
        title="Partners",
        partner=None,
        partners=items,
        total=total,
        **paging(request, offset, OPERATOR_PAGE, total),
    )


@routes.post("/operator/partners/{partner_id}", name="act_for")
async def act_for(request: web.Request) -> web.StreamResponse:
    try:
        partner_id = uuid.UUID(request.match_info["partner_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    assert session_of(request).operator
    await portal_access.act_for(request.config_dict[POOL], request[SESSION_ID], partner_id)
    raise web.HTTPSeeOther(request.app.router["callbacks"].url_for())
