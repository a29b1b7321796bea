"""Authorising a request as its route declares: a valid token, the scope, the partner.

The token is checked before the path is parsed, so a caller without a valid token learns
nothing about which paths exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web

from service.api.app_keys import VERIFIER
from service.api.parsing import path_uuid
from service.api.request_ids import request_id_of
from service.api.tokens import Principal, bearer_token
from service.core.audit import Actor, ActorType

PARTNER_PARAM = "partnerUniqueID"


@dataclass(frozen=True)
class Caller:
    """Who is calling (None on a public route) and the partner the path names, if any."""

    principal: Principal | None = None
    path_partner: UUID | None = None
    client_address: str | None = None
    request_id: str | None = None

    @property
    def partner_id(self) -> UUID:
        """The partner of a partner-scoped route (authorised already)."""
        assert self.path_partner is not None, "not a partner-scoped route"
        return self.path_partner

    @property
    def actor(self) -> Actor:
        """Who the audit trail says made a change (an authenticated route's caller)."""
        assert self.principal is not None, "not an authenticated route"
        return Actor(
            ActorType.TOKEN,
            self.principal.subject,
            partner_bound=self.principal.partner_id is not None,
            scopes=tuple(sorted(self.principal.scopes)),
            client_address=self.client_address,
            request_id=self.request_id,
        )


def authorise(
    request: web.Request, authenticated: bool, scope: str | None, partner_scoped: bool
) -> Caller:
    """The caller of a route that declares ``scope`` (and names a partner when
    ``partner_scoped``); ``Unauthorized`` or ``Forbidden`` when it may not call it."""
    if not authenticated:
        return Caller()
    token = bearer_token(request.headers.get("Authorization"))
    principal = request.app[VERIFIER].verify(token)
    if scope is not None:
        principal.require_scope(scope)
    partner_id = None
    if not partner_scoped:
        if scope is not None:
            principal.require_unbound()
    else:
        partner_id = path_uuid(request, PARTNER_PARAM)
        principal.require_partner(partner_id)
    return Caller(principal, partner_id, request.remote, request_id_of(request))
