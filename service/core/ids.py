"""Notification ids: UUID version 7 (RFC 9562), ordered by creation time.

New rows then land at the right-hand end of every index keyed by the id (notifications,
deliveries, delivery_attempts) instead of on a random page of it. With a month of notifications
kept for retention, random (version 4) ids made each insert and each status update touch a
different page of those indexes, and after every checkpoint write that page whole to the WAL.
The 74 random bits keep the ids unguessable; the millisecond they carry is the notification's
``createdAt``, which the API shows anyway.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62
_RAND_B = (1 << 62) - 1


def uuid7_batch(count: int) -> list[uuid.UUID]:
    """``count`` new version-7 ids of this millisecond (one call for the randomness of all)."""
    milliseconds = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    prefix = (milliseconds << 80) | _VERSION_7 | _VARIANT_RFC
    randomness = os.urandom(10 * count)
    ids = []
    for start in range(0, 10 * count, 10):
        bits = int.from_bytes(randomness[start : start + 10], "big")  # 80 random bits
        rand_a, rand_b = bits >> 68, bits & _RAND_B  # 12 and 62 of them
        ids.append(uuid.UUID(int=prefix | (rand_a << 64) | rand_b))
    return ids


def uuid7() -> uuid.UUID:
    return uuid7_batch(1)[0]
