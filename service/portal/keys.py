"""What a portal request carries once the guard has let it in."""

from __future__ import annotations

from aiohttp import web

from service.core.portal_access import PortalSession

COOKIE = "callbackhub_portal"
SESSION = web.RequestKey("portal_session", PortalSession)
SESSION_ID = web.RequestKey("portal_session_id", str)
