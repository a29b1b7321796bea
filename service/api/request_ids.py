"""A request id for every request: the caller's ``X-Request-Id`` when it is a sane token, else
a new one. It is sent back in the response, carried by every log line written while the
request runs, and stored with the audit record of any change the request made."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.core.logs import request_id_var

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(request: web.Request) -> str | None:
    request_id: str | None = request.get(REQUEST_ID)
    return request_id


@web.middleware
async def assign_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(HEADER)
    request_id = given if given is not None and _SANE.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    request_id_var.set(request_id)
    response = await handler(request)
    response.headers[HEADER] = request_id
    return response
