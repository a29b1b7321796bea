"""What the page handlers share: the session's partner, form fields, and paging links."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from service.api.app_keys import POOL
from service.core import partners
from service.core.audit import Actor
from service.core.notification_types import NOTIFICATION_TYPES, type_name
from service.core.portal_access import PortalSession
from service.core.schemas import Partner
from service.portal.keys import SESSION

TYPE_NAMES = {
    notification_type: type_name(notification_type) for notification_type in NOTIFICATION_TYPES
}


def session_of(request: web.Request) -> PortalSession:
    return request[SESSION]


def partner_id_of(request: web.Request) -> uuid.UUID:
    """The partner whose pages these are (the guard sends a session without one elsewhere)."""
    partner_id = session_of(request).partner_id
    assert partner_id is not None
    return partner_id


def actor_of(request: web.Request) -> Actor:
    from service.api.request_ids import request_id_of

    return session_of(request).actor(request.remote, request_id_of(request))


async def partner_of(request: web.Request) -> Partner:
    return await partners.get_partner(request.config_dict[POOL], partner_id_of(request))


def notification_type_of(request: web.Request) -> int:
    """The type in the path; an unknown one is a 404 like any page that does not exist."""
    raw = request.match_info["notification_type"]
    if not raw.isdigit() or int(raw) not in NOTIFICATION_TYPES:
        raise web.HTTPNotFound()
    return int(raw)


def text_field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def page_link(request: web.Request, offset: int) -> str:
    query = {k: v for k, v in request.query.items() if k != "offset" and v}
    if offset:
        query["offset"] = str(offset)
    return f"{request.path}?{urlencode(query)}" if query else request.path


def paging(request: web.Request, offset: int, limit: int, total: int) -> dict[str, Any]:
    previous = page_link(request, max(offset - limit, 0)) if offset > 0 else None
    following = page_link(request, offset + limit) if offset + limit < total else None
    return {"previous_page": previous, "next_page": following}


def offset_of(request: web.Request) -> int:
    raw = request.query.get("offset", "0")
    return int(raw) if raw.isdigit() and len(raw) < 12 else 0
