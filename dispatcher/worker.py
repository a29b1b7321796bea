"""The dispatcher: claim due deliveries, send them within the concurrency limits, record the
outcomes, and shut down without losing anything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractResolver
from opentelemetry import context as otel_context
from prometheus_client import generate_latest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from dispatcher import outcomes, queue
from dispatcher.listener import listen_forever
from dispatcher.retention import purge_forever
from dispatcher.retry import RetryPolicy
from dispatcher.sender import AttemptResult, Delivery, Sender, internal_error
from service.core import tracing
from service.core.changes import log_changes
from service.core.database import DATABASE_DOWN, create_pool
from service.core.egress import EgressProxy, egress_session
from service.core.encryption import load_keyring
from service.core.metrics import IN_FLIGHT
from service.core.runtime import freeze_startup_objects, loop_factory, package_version
from service.core.settings import Settings
from service.core.stored_secrets import check_keys_open_stored_secrets

log = logging.getLogger(__name__)
FLUSH_BATCH = 500


class Dispatcher:
    def __init__(self, settings: Settings, dsn: str, dns: AbstractResolver | None = None) -> None:
        self._settings = settings
        self._dsn = dsn
        self._dns = dns  # None: the system resolver (tests inject a scripted one)
        self._policy = RetryPolicy(settings.retry_schedule, settings.retry_jitter)
        self._keyring = load_keyring(settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._results: list[AttemptResult] = []
        self._results_ready = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._per_callback: Counter[int] = Counter()
        self._stopping = False
        self._background: list[asyncio.Task[None]] = []

    @property
    def lease_seconds(self) -> float:
        return self._settings.delivery_timeout + self._settings.lease_margin

    async def start(self) -> None:
        self._pool = await create_pool(
            self._dsn,
            self._settings.model_copy(update={"database_pool_max": 4, "database_pool_min": 1}),
        )
        try:
            await check_keys_open_stored_secrets(self._pool, self._keyring)
        except BaseException:
            await self._pool.close()
            raise
        proxy = None
        if self._settings.egress_proxy is not None:
            proxy = EgressProxy.parse(self._settings.egress_proxy.get_secret_value())
            log.info("deliveries go through the egress proxy", extra={"proxy": str(proxy.url)})
        self._session = egress_session(
            self._settings.allowed_networks, self._settings.max_in_flight, self._dns, proxy
        )
        self._sender = Sender(
            self._session,
            self._settings.delivery_timeout,
            f"callbackhub/{package_version()}",
            self._keyring,
        )
        self._background = [
            asyncio.create_task(self._claim_loop(), name="claim-loop"),
            asyncio.create_task(self._flush_loop(), name="flush-loop"),
            asyncio.create_task(listen_forever(self._dsn, self._wake.set), name="listener"),
            asyncio.create_task(purge_forever(self._pool, self._settings), name="retention"),
        ]
        log.info("dispatcher started", extra={"worker": self.worker_id})

    # Claiming.

    def _limits(self) -> queue.ClaimLimits:
        per_callback = self._settings.max_per_callback
        busy = {cb: per_callback - n for cb, n in self._per_callback.items() if n > 0}
        free = self._settings.max_in_flight - len(self._in_flight)
        return queue.ClaimLimits(min(free, self._settings.claim_batch), per_callback, busy)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            more = False
            async for attempt in _until_database_answers("claim"):
                with attempt:
                    more = await self._claim_once()
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)

    async def _claim_once(self) -> bool:
        """Claim and start what fits; True when there is probably more to claim right away."""
        limits = self._limits()
        if limits.total <= 0:
            return False
        started = time.time_ns()
        deliveries = await queue.claim(self._pool, limits, self.lease_seconds, self.worker_id)
        if tracing.enabled() and deliveries:
            _record_claim_span(started, deliveries)
        for delivery in deliveries:
            self._start(delivery)
        return len(deliveries) == limits.total and not self._stopping

    def _start(self, delivery: Delivery) -> None:
        IN_FLIGHT.inc()
        self._per_callback[delivery.callback_id] += 1
        task = asyncio.create_task(self._deliver(delivery))
        self._in_flight[delivery.notification_id] = task

    async def _deliver(self, delivery: Delivery) -> None:
        """Make one attempt and queue its result for the write-back, whatever it raised: an
        attempt that is never recorded would be claimed again at every lease expiry, forever.
        (A cancellation at shutdown is the exception: its lease is given back uncharged.)"""
        started_at = datetime.now(UTC)
        try:
            result = await self._sender.attempt(delivery)
        except Exception as error:
            log.exception(
                "delivery attempt failed inside callbackhub: %s",
                type(error).__name__,
                extra={"notification_id": delivery.notification_id, "attempt": delivery.attempt},
            )
            result = internal_error(delivery, started_at, error)
        finally:
            IN_FLIGHT.dec()
            self._in_flight.pop(delivery.notification_id, None)
            self._per_callback[delivery.callback_id] -= 1
            if self._per_callback[delivery.callback_id] <= 0:
                del self._per_callback[delivery.callback_id]
        self._results.append(result)
        self._results_ready.set()

    # Recording outcomes.

    async def _flush_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            await self._flush()

    async def _flush(self) -> None:
        """Write back finished attempts; on a database error keep them and try again."""
        while self._results:
            batch = self._results[:FLUSH_BATCH]
            finished = queue.Finished([], [])
            async for attempt in _until_database_answers("recording outcomes"):
                with attempt:
                    finished = await queue.finish(
                        self._pool, batch, self._policy, self._settings.disable_after
                    )
            del self._results[: len(batch)]
            outcomes.observe(batch, finished.verdicts, self._settings.metrics_per_partner)
            log_changes(finished.changes)
            # Slots are free now and successors of ordered deliveries are released: claim.
            self._wake.set()
        self._results_ready.clear()

    # Stopping.

    async def stop(self) -> None:
        """Stop claiming, let in-flight requests finish within the grace period, record them,
        and give back the leases of those that did not finish."""
        self._stopping = True
        self._wake.set()
        for task in self._background:
            if task.get_name() != "flush-loop":
                task.cancel()
        await _wait_quietly(self._background[:1] + self._background[2:])
        unfinished = await self._drain_in_flight()
        self._background[1].cancel()
        await _wait_quietly(self._background[1:2])
        await self._finish_stop(unfinished)

    async def _drain_in_flight(self) -> list[str]:
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self._settings.shutdown_grace)
        unfinished = list(self._in_flight)
        for task in self._in_flight.values():
            task.cancel()
        await _wait_quietly(list(self._in_flight.values()))
        return unfinished

    async def _finish_stop(self, unfinished: list[str]) -> None:
        try:
            await asyncio.wait_for(self._flush(), self._settings.shutdown_grace + 5)
            if unfinished:
                await queue.release_leases(self._pool, unfinished, self.worker_id)
        except (TimeoutError, *DATABASE_DOWN) as error:
            log.warning("could not record everything at shutdown (leases will expire): %s", error)
        await self._session.close()
        await self._pool.close()
        log.info(
            "dispatcher stopped", extra={"worker": self.worker_id, "released": len(unfinished)}
        )


EXPECTED_FAILURES = (*DATABASE_DOWN, asyncpg.TransactionRollbackError)


def _until_database_answers(what: str) -> AsyncRetrying:
    """Retry ``what`` until it succeeds, backing off up to 5 s.

    Expected: the database is away, or PostgreSQL rolled the transaction back to break a
    deadlock (it may simply run again). Anything else is a bug, logged with its traceback, but
    still retried: a dispatcher loop that died quietly would stop delivery for good.
    """

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, EXPECTED_FAILURES):
            log.warning("%s failed, retrying: %s", what, type(error).__name__)
        else:
            log.error("%s failed unexpectedly, retrying", what, exc_info=error)

    return AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=0.1, max=5),
        before_sleep=report,
    )


async def _wait_quietly(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _record_claim_span(started_ns: int, deliveries: list[Delivery]) -> None:
    """The claim as a span of its own, linked to each notification it carried."""
    span = tracing.tracer().start_span(
        "claim deliveries",
        context=otel_context.Context(),
        links=tracing.links_to(d.trace_context for d in deliveries),
        start_time=started_ns,
        attributes={"callbackhub.claim.size": len(deliveries)},
    )
    span.end()


async def _run_until_signalled(settings: Settings, dsn: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    dispatcher = Dispatcher(settings, dsn)
    await dispatcher.start()
    metrics = await _serve_metrics(settings)
    freeze_startup_objects()
    await stop.wait()
    await dispatcher.stop()
    if metrics is not None:
        await metrics.cleanup()


async def _serve_metrics(settings: Settings) -> web.AppRunner | None:
    """A standalone dispatcher has no API: with CALLBACKHUB_METRICS_PORT it serves its own
    ``/metrics`` (delivery outcomes, durations, lag, in-flight) and ``/health/live``."""
    if settings.metrics_port is None:
        return None

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type="text/plain", charset="utf-8")

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health/live", live)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    return runner


def run_standalone(settings: Settings, dsn: str) -> int:
    """``callbackhub dispatcher``: deliver until SIGTERM, then exit 0."""
    tracing.configure()
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(_run_until_signalled(settings, dsn))
    return 0
