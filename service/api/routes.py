"""The route table: each view declares its method, path, access and bodies once.

``service.api.app`` registers the routes from this table, ``service.api.openapi`` describes
the API from it, and the handler it registers authorises the caller before the view runs: a
view never checks a scope itself, so what the document says is what is enforced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from service.api.auth import PARTNER_PARAM, Caller, authorise

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
View = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]
_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    view: View
    summary: str
    tag: str
    # The scope a token needs (``partners:admin`` always suffices). None: any valid token, or
    # no token at all when ``authenticated`` is false.
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

    @property
    def template(self) -> str:
        """The path without the patterns some parameters carry: ``{name}`` only."""
        return _PATTERN.sub(r"{\1}", self.path)

    @property
    def partner_scoped(self) -> bool:
        """A path that names a partner: a partner-bound token may only name its own."""
        return "{" + PARTNER_PARAM + "}" in self.path

    @property
    def name(self) -> str:
        return self.view.__name__

    def handler(self) -> Handler:
        """The aiohttp handler: authorise as declared, then run the view. What the route
        declares is read once here, not on every request (echo is the hot path)."""
        view, authenticated, scope, partner_scoped = (
            self.view,
            self.authenticated,
            self.scope,
            self.partner_scoped,
        )

        @functools.wraps(view)
        async def handle(request: web.Request) -> web.StreamResponse:
            caller = authorise(request, authenticated, scope, partner_scoped)
            return await view(request, caller)

        return handle


ROUTES: list[Route] = []


def route(method: str, path: str, **details: object) -> Callable[[View], View]:
    """Register the decorated view in ``ROUTES``."""

    def register(view: View) -> View:
        ROUTES.append(Route(method, path, view, **details))  # type: ignore[arg-type]
        return view

    return register
