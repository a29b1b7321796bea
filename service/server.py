"""``callbackhub serve``: the API (and by default a dispatcher) in one or more processes.

With the CLI, the composition root: the one place that puts the API and the dispatcher into
one process. Neither imports the other.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from dispatcher.worker import Dispatcher
from service.api.app import create_app
from service.api.tokens import ensure_jwt_secret
from service.core import tracing
from service.core.database import database_url
from service.core.logs import configure_logging
from service.core.runtime import loop_factory, tune_garbage_collector
from service.core.settings import Settings
from service.portal.app import mount_portal

log = logging.getLogger("callbackhub")


def build_app(settings: Settings, dsn: str, *, with_dispatcher: bool) -> web.Application:
    """The API and the partner portal; with ``with_dispatcher`` the same process also
    delivers notifications."""
    app = create_app(settings, dsn)
    mount_portal(app, settings)
    if with_dispatcher:
        app.cleanup_ctx.append(dispatcher_context(settings, dsn))
    return app


def dispatcher_context(
    settings: Settings, dsn: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run a dispatcher for the application's lifetime (started after the API's database)."""

    async def run_dispatcher(app: web.Application) -> AsyncIterator[None]:
        dispatcher = Dispatcher(settings, dsn)
        await dispatcher.start()
        yield
        await dispatcher.stop()

    return run_dispatcher


def _print_first_run_hints(settings: Settings) -> None:
    print(
        "callbackhub: generated a JWT secret in "
        f"{settings.data_dir / 'jwt-secret'}; mint a token with:\n"
        f'  {_console_script()} token --scope "partners:admin"',
        file=sys.stderr,
    )


def _console_script() -> str:
    """How to call ``callbackhub`` from here: the script beside this interpreter (in the
    virtualenv that ``make run`` made), relative to the current folder when inside it."""
    script = Path(sys.executable).parent / "callbackhub"
    if not script.exists():
        return "callbackhub"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def serve(settings: Settings, *, with_dispatcher: bool, workers: int = 1) -> int:
    """Serve until stopped; the settings name the encryption keys (``ensure_encryption_keys``)."""
    settings, created = ensure_jwt_secret(settings)
    if created:
        _print_first_run_hints(settings)
    dsn = database_url(settings)
    if workers <= 1:
        _run(settings, dsn, with_dispatcher, reuse_port=False)
        return 0
    return _run_workers(settings, dsn, with_dispatcher, workers)


def _run(settings: Settings, dsn: str, with_dispatcher: bool, reuse_port: bool) -> None:
    tracing.configure()  # in each process: an exporter thread does not survive a spawn
    app = build_app(settings, dsn, with_dispatcher=with_dispatcher)
    app.on_startup.append(_tune_garbage_collector)  # after the pool and dispatcher started
    log.info(
        "serving on http://%s:%d",
        settings.host,
        settings.port,
        extra={"dispatcher": with_dispatcher},
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        print=None,
        shutdown_timeout=settings.shutdown_grace,
        access_log=None,
        loop=loop_factory(settings.event_loop)(),
    )


async def _tune_garbage_collector(app: web.Application) -> None:
    tune_garbage_collector()


def _worker(settings: Settings, dsn: str, with_dispatcher: bool) -> None:
    configure_logging(settings.log_level, settings.log_format)
    _run(settings, dsn, with_dispatcher, reuse_port=True)


def _run_workers(settings: Settings, dsn: str, with_dispatcher: bool, workers: int) -> int:
    """Several API processes on one port (SO_REUSEPORT); the kernel spreads connections."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("callbackhub: --workers needs SO_REUSEPORT", file=sys.stderr)
        return 2
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(settings, dsn, with_dispatcher and i == 0))
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def stop_workers(signum: int, frame: object) -> None:
        # SIGTERM to this parent must reach the workers, or they keep serving after it exits.
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, stop_workers)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.join()
    return max((p.exitcode or 0) for p in processes)
