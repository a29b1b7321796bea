"""The secrets in the database, as a whole: checking at start-up that the keys open them,
sealing the ones stored before encryption existed, and re-sealing under a new key.

The callbacks table holds most of them (the signing secret and, during a rotation, the previous
one; the credentials); each row's identity, ``callbacks/<partner>/<type>``, is the associated
data. The operator webhook's secrets are sealed with ``operator_webhooks/1``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import asyncpg

import sql
from service.core.database import Pool
from service.core.encryption import (
    SEALED_PREFIX,
    EncryptionKeyError,
    Keyring,
    SecretUnreadable,
)

log = logging.getLogger(__name__)
Q = sql.load_queries("stored_secrets")
BATCH = 500


# The order of reseal_callback_secrets' arguments.
_RESEAL_ARGUMENTS = (
    "id",
    "old signing_secret",
    "new signing_secret",
    "old previous_secret",
    "new previous_secret",
    "old sealed_credentials",
    "new sealed_credentials",
)
CREDENTIALS_SUFFIX = "#credentials"
# The associated data of the operator webhook's secrets (service.core.operator_webhook).
OPERATOR_WEBHOOK_ROW = "operator_webhooks/1"


def callback_row(partner_id: uuid.UUID | str, notification_type: int) -> str:
    """The associated data of a callback's secrets."""
    return f"callbacks/{partner_id}/{notification_type}"


async def check_keys_open_stored_secrets(pool: Pool, keyring: Keyring) -> None:
    """Open one stored secret per key id in use: a key missing from the configuration, or a
    wrong key under a known id, stops start-up here rather than failing deliveries later."""
    for row in await pool.fetch(Q["one_callback_secret_per_key"]):
        context = callback_row(row["partner_id"], row["notification_type"])
        if row["column_name"] == "credentials":
            context += CREDENTIALS_SUFFIX
        _check_opens(keyring, row["stored"], context)
    for stored in await _operator_secrets(pool):
        if stored.startswith(SEALED_PREFIX):
            _check_opens(keyring, stored, OPERATOR_WEBHOOK_ROW)


def _check_opens(keyring: Keyring, stored: str, context: str) -> None:
    try:
        keyring.open(stored, context)
    except SecretUnreadable as error:
        raise EncryptionKeyError(
            f"the encryption keys cannot open the stored secrets ({error}); configure the "
            "key that sealed them in CALLBACKHUB_ENCRYPTION_KEYS"
        ) from None


async def _operator_secrets(pool: Pool) -> list[str]:
    row = await pool.fetchrow(Q["operator_webhook_secrets"])
    if row is None:
        return []
    return [s for s in (row["signing_secret"], row["previous_secret"]) if s is not None]


async def prepare_stored_secrets(pool: Pool, keyring: Keyring) -> None:
    """At start-up, after the migrations: seal what is still in clear, then check the keys."""
    sealed = await reseal(pool, keyring, only_plaintext=True)
    if sealed:
        log.info("sealed %d secrets stored in clear by an earlier version", sealed)
    await check_keys_open_stored_secrets(pool, keyring)


async def count_to_reseal(pool: Pool, keyring: Keyring) -> int:
    count: int = await pool.fetchval(Q["count_callback_secrets_to_reseal"], _wanted(keyring))
    if any(not s.startswith(_wanted(keyring)) for s in await _operator_secrets(pool)):
        count += 1
    return count


async def reseal(
    pool: Pool,
    keyring: Keyring,
    *,
    only_plaintext: bool = False,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Seal every secret under the first key (or, with ``only_plaintext``, only the ones in
    clear), in batches of short transactions, while the service runs; how many were sealed.

    A row changed meanwhile (a secret rotated) is left as it is: it was sealed by the service
    that changed it, with that service's first key.
    """
    prefix = SEALED_PREFIX if only_plaintext else _wanted(keyring)
    total, after = await _reseal_operator_webhook(pool, keyring, prefix), -1
    while True:
        rows = await pool.fetch(Q["callback_secrets_to_reseal"], after, prefix, BATCH)
        if not rows:
            return total
        after = rows[-1]["id"]
        done = await _reseal_batch(pool, keyring, rows, prefix)
        total += done
        if progress is not None:
            progress(len(rows))
        await asyncio.sleep(0)  # let the hot paths in between batches


async def _reseal_batch(
    pool: Pool, keyring: Keyring, rows: list[asyncpg.Record], prefix: str
) -> int:
    columns: dict[str, list[object]] = {name: [] for name in _RESEAL_ARGUMENTS}
    for row in rows:
        context = callback_row(row["partner_id"], row["notification_type"])
        columns["id"].append(row["id"])
        for column, suffix in (
            ("signing_secret", ""),
            ("previous_secret", ""),
            ("sealed_credentials", CREDENTIALS_SUFFIX),
        ):
            columns[f"old {column}"].append(row[column])
            resealed = _resealed(keyring, row[column], context + suffix, prefix)
            columns[f"new {column}"].append(resealed)
    status = await pool.execute(
        Q["reseal_callback_secrets"], *(columns[name] for name in _RESEAL_ARGUMENTS)
    )
    return int(status.split()[-1])


async def _reseal_operator_webhook(pool: Pool, keyring: Keyring, prefix: str) -> int:
    row = await pool.fetchrow(Q["operator_webhook_secrets"])
    if row is None:
        return 0
    old = (row["signing_secret"], row["previous_secret"])
    new = tuple(_resealed(keyring, stored, OPERATOR_WEBHOOK_ROW, prefix) for stored in old)
    if new == old:
        return 0
    status = await pool.execute(Q["reseal_operator_webhook_secrets"], *old, *new)
    return int(status.split()[-1])


def _resealed(keyring: Keyring, stored: str | None, context: str, prefix: str) -> str | None:
    if stored is None or stored.startswith(prefix):
        return stored
    plaintext = keyring.open(stored, context) if stored.startswith(SEALED_PREFIX) else stored
    return keyring.seal(plaintext, context)


def _wanted(keyring: Keyring) -> str:
    return f"{SEALED_PREFIX}{keyring.primary}:"
