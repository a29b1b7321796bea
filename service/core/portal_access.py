"""Who may use the partner portal: single-use links, the sessions they open, and revoking them.

A link carries a random code; the database keeps only its SHA-256, and opening the link marks
it used in the same statement that checks it, so a code opens one session at most. The session
id (the cookie) is stored the same way. A session lasts until the link's expiry or 8 hours,
whichever is sooner. The CSRF token of a session is derived from its id, so it needs no storage
and is worthless without the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

import sql
from service.core import audit
from service.core.audit import Actor, AuditAction
from service.core.database import Pool
from service.core.errors import PartnerNotFound

Q = sql.load_queries("portal_access")
SESSION_HOURS = 8


class Access(StrEnum):
    MANAGE = "manage"
    READ = "read"


class LinkUnusable(Exception):
    """The portal link was used already, has expired, or never existed."""


@dataclass(frozen=True)
class PortalSession:
    public_id: uuid.UUID
    partner_id: uuid.UUID | None  # the partner whose pages it shows (an operator's pick)
    operator: bool
    access: Access
    expires_at: datetime

    @property
    def read_only(self) -> bool:
        return self.access is Access.READ

    def actor(self, client_address: str | None, request_id: str | None) -> Actor:
        return Actor(
            audit.ActorType.PORTAL,
            "operator" if self.operator else "partner",
            partner_bound=not self.operator,
            scopes=(self.access.value,),
            session=str(self.public_id),
            client_address=client_address,
            request_id=request_id,
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_token(session_id: str) -> str:
    """The form token of a session: bound to it, and useless without its cookie."""
    mac = hmac.digest(session_id.encode(), b"callbackhub portal csrf", "sha256")
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_matches(session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_id), given)


async def issue_link(
    pool: Pool,
    partner_id: uuid.UUID | None,
    access: Access,
    expires_in: int,
    actor: Actor,
) -> tuple[str, datetime]:
    """A new code for ``partner_id`` (None: the operator view); the code and its expiry."""
    code = secrets.token_urlsafe(32)
    async with pool.acquire() as connection, connection.transaction():
        if partner_id is not None and not await connection.fetchval(
            Q["portal_partner_exists"], partner_id
        ):
            raise PartnerNotFound()
        expires_at: datetime = await connection.fetchval(
            Q["insert_portal_link"], _digest(code), partner_id, access.value, float(expires_in)
        )
        details = {
            "access": access.value,
            "operator": partner_id is None,
            "expiresAt": expires_at.isoformat(),
        }
        await audit.record(
            connection, actor, AuditAction.PORTAL_LINK_ISSUED, partner_id, details=details
        )
    return code, expires_at


async def open_link(pool: Pool, code: str) -> tuple[str, PortalSession]:
    """Use the code once: a new session id (for the cookie) and its session."""
    session_id = secrets.token_urlsafe(32)
    async with pool.acquire() as connection, connection.transaction():
        link = await connection.fetchrow(Q["use_portal_link"], _digest(code))
        if link is None:
            raise LinkUnusable()
        row = await connection.fetchrow(
            Q["insert_portal_session"],
            _digest(session_id),
            uuid.uuid4(),
            link["partner_id"],
            link["access"],
            float(SESSION_HOURS * 3600),
            link["expires_at"],
        )
    assert row is not None
    return session_id, _session(row)


def _session(row: asyncpg.Record) -> PortalSession:
    return PortalSession(
        public_id=row["public_id"],
        partner_id=row["partner_id"] or row["acting_partner_id"],
        operator=row["operator"],
        access=Access(row["access"]),
        expires_at=row["expires_at"],
    )


async def find_session(pool: Pool, session_id: str) -> PortalSession | None:
    """The live session of this id, or None (unknown, ended, expired)."""
    row = await pool.fetchrow(Q["live_portal_session"], _digest(session_id))
    return _session(row) if row is not None else None


async def end_session(pool: Pool, session_id: str) -> None:
    await pool.execute(Q["end_portal_session"], _digest(session_id))


async def act_for(pool: Pool, session_id: str, partner_id: uuid.UUID) -> None:
    """An operator session shows this partner's pages from now on."""
    if not await pool.fetchval(Q["act_for_partner"], _digest(session_id), partner_id):
        raise PartnerNotFound()


async def revoke_sessions(pool: Pool, partner_id: uuid.UUID, actor: Actor) -> int:
    """End every live portal session of the partner (and unused links); how many ended."""
    async with pool.acquire() as connection, connection.transaction():
        if not await connection.fetchval(Q["portal_partner_exists"], partner_id):
            raise PartnerNotFound()
        ended: int = await connection.fetchval(Q["revoke_portal_sessions"], partner_id)
        await audit.record(
            connection,
            actor,
            AuditAction.PORTAL_SESSIONS_REVOKED,
            partner_id,
            details={"sessionsEnded": ended},
        )
    return ended
