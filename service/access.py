"""Authorising a request: verify its bearer token, then check scope and partner.

The token is checked before the path is parsed, so a caller without a valid token learns
nothing about which paths exist.
"""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from service.auth import Principal, bearer_token
from service.keys import VERIFIER
from service.problems import path_uuid

PARTNER_PARAM = "partnerUniqueID"


def authenticate(request: web.Request) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    return request.app[VERIFIER].verify(token)


def authorize(request: web.Request, scope: str) -> Principal:
    """The caller, if the token is valid and has ``scope``; partner-bound tokens are refused."""
    principal = authenticate(request)
    principal.require(scope, partner_id=None)
    return principal


def authorize_partner(request: web.Request, scope: str) -> UUID:
    """The partner in the path, if the token has ``scope`` and may act on that partner."""
    principal = authenticate(request)
    partner_id = path_uuid(request, PARTNER_PARAM)
    principal.require(scope, partner_id)
    return partner_id
