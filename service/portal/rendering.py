"""Rendering portal pages: Jinja2 templates with autoescaping on, so whatever a partner or an
emitter wrote is shown as text; every page gets the session, the CSRF token and the nav."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from service.core import portal_access
from service.portal.keys import SESSION, SESSION_ID

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("service.portal", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    """A time as a person reads it, in UTC."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "never"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


ENVIRONMENT.filters["when"] = _when
ENVIRONMENT.filters["pretty"] = _pretty


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    session_id = request.get(SESSION_ID)
    page = ENVIRONMENT.get_template(template).render(
        session=session,
        csrf=portal_access.csrf_token(session_id) if session_id else "",
        url=lambda name, **parts: str(request.app.router[name].url_for(**parts)),
        static=lambda path: f"/portal/static/{path}",
        current=request.match_info.route.name or "",
        **({"notice": None, "partner": None} | context),
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def render_message(request: web.Request, title: str, message: str, status: int) -> web.Response:
    return render(request, "message.html", status=status, title=title, message=message)
