"""The route table: each view declares its method, path, scope and bodies once.

``service.app`` registers the routes from this table and ``service.openapi`` describes the API
from it, so the document cannot drift from what the views do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: str | None = None
    authenticated: bool = True
    body: type[BaseModel] | None = None
    raw_body: bool = False
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    # Statuses whose body is another model than ``response`` (e.g. 201 with the new secret).
    status_models: dict[int, type[BaseModel]] = field(default_factory=dict)
    status: int = 200
    extra_statuses: dict[int, str] = field(default_factory=dict)
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, **details: object) -> Callable[[Handler], Handler]:
    """Register the decorated view in ``ENDPOINTS``."""

    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(Endpoint(method, path, handler, **details))  # type: ignore[arg-type]
        return handler

    return register
