"""Ordered delivery: one notification of a subject in flight at a time, in sequence order.

Everything that changes what is pending for an ordered subject (echo, the dispatcher's
write-back, redelivery, deleting a callback or a partner) first locks the subjects'
``subject_sequences`` rows, always in the order of the SQL function ``lock_subjects_v1``
(callback, then subject). One order everywhere is what keeps those transactions from
deadlocking with each other; echo takes the same order when it reserves sequence numbers
(``store_notifications_v1``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

import sql
from service.core.changes import Change, changes_from

Q = sql.load_queries("ordering")

Subject = tuple[int, uuid.UUID]  # (callback id, processUniqueId or simulationUniqueId)


def _columns(subjects: Iterable[Subject]) -> tuple[list[int], list[uuid.UUID]]:
    pairs = sorted(set(subjects))
    return [callback for callback, _ in pairs], [subject for _, subject in pairs]


async def lock_subjects(connection: asyncpg.Connection, subjects: Iterable[Subject]) -> None:
    await connection.execute(Q["lock_subjects"], *_columns(subjects))


async def lock_partner_subjects(
    connection: asyncpg.Connection, partner_id: uuid.UUID, callback_id: int | None = None
) -> None:
    """Lock the subjects of one callback of the partner, or of all its callbacks."""
    await connection.execute(Q["lock_partner_subjects"], partner_id, callback_id)


async def release_successors(
    connection: asyncpg.Connection, subjects: Iterable[Subject]
) -> list[Change]:
    """Let the next pending notification of each subject go; the releases made."""
    return changes_from(await connection.fetch(Q["release_successors"], *_columns(subjects)))
