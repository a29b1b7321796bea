"""What every portal request passes through: the security headers, the session cookie, the
CSRF token of every POST, and the read-only rule, before a page handler runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.app_keys import POOL, SETTINGS
from service.core import portal_access
from service.core.portal_access import PortalSession
from service.portal.keys import COOKIE, SESSION, SESSION_ID
from service.portal.rendering import render_message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes a person reaches without a session, and POSTs a read-only session may still make.
PUBLIC_ROUTES = frozenset({"login", "static"})
READ_ONLY_POSTS = frozenset({"sign_out", "act_for"})  # they change no configuration
OPERATOR_ROUTES = frozenset({"operator", "act_for"})


def security_headers(frame_ancestors: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {frame_ancestors}"
    )

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return add_headers


def _route_name(request: web.Request) -> str:
    return request.match_info.route.name or ""


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = _route_name(request)
    if name in PUBLIC_ROUTES or request.match_info.http_exception is not None:
        return await handler(request)
    session_id = request.cookies.get(COOKIE)
    session = None
    if session_id:
        session = await portal_access.find_session(request.config_dict[POOL], session_id)
    if session_id is None or session is None:
        return render_message(
            request,
            "Signed out",
            "Your portal session has ended. Ask the platform for a new portal link.",
            status=401,
        )
    request[SESSION] = session
    request[SESSION_ID] = session_id
    if request.method == "POST":
        refused = await _refuse_post(request, session_id, session, name)
        if refused is not None:
            return refused
    return await _route_for(request, handler, session, name)


async def _refuse_post(
    request: web.Request, session_id: str, session: PortalSession, name: str
) -> web.StreamResponse | None:
    form = await request.post()
    token = form.get("csrf")
    if not portal_access.csrf_matches(session_id, token if isinstance(token, str) else None):
        return render_message(
            request,
            "Not accepted",
            "This form was not sent from your portal session. Reload the page and try again.",
            status=403,
        )
    if session.read_only and name not in READ_ONLY_POSTS:
        return render_message(
            request,
            "Read-only access",
            "This portal link gives read-only access: nothing can be changed with it.",
            status=403,
        )
    return None


async def _route_for(
    request: web.Request, handler: Handler, session: PortalSession, name: str
) -> web.StreamResponse:
    if name in OPERATOR_ROUTES and not session.operator:
        raise web.HTTPNotFound()
    if name not in OPERATOR_ROUTES and name not in READ_ONLY_POSTS and session.partner_id is None:
        raise web.HTTPSeeOther(request.app.router["operator"].url_for())
    return await handler(request)


def cookie_is_secure(request: web.Request) -> bool:
    return request.config_dict[SETTINGS].base_url.startswith("https://")
