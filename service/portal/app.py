"""The partner portal: server-rendered pages under ``/portal``, mounted on the API's
application (``service.server``), calling the same domain functions as the JSON views."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from service.core.errors import Problem
from service.core.settings import Settings
from service.portal.guard import require_session, security_headers
from service.portal.pages import access, callbacks, deliveries, reference
from service.portal.rendering import render_message

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PREFIX = "/portal"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_as_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A domain error (not found, conflict, invalid) is a page that says so, with its status."""
    try:
        return await handler(request)
    except Problem as problem:
        return render_message(request, problem.title, problem.detail, problem.status)
    except web.HTTPNotFound:
        return render_message(request, "Not found", "There is no such page here.", 404)


def create_portal(settings: Settings) -> web.Application:
    portal = web.Application(
        middlewares=[
            security_headers(settings.portal_frame_ancestors),
            problems_as_pages,
            require_session,
        ]
    )
    for module in (access, callbacks, deliveries, reference):
        portal.router.add_routes(module.routes)
    portal.router.add_static("/static", STATIC, name="static")
    return portal


def mount_portal(app: web.Application, settings: Settings) -> None:
    """Serve the portal under ``/portal`` of ``app``; ``/portal`` itself leads to its start."""

    async def to_start(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(PREFIX + "/")

    app.router.add_get(PREFIX, to_start)
    app.add_subapp(PREFIX, create_portal(settings))
