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
import weakref
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractResolver
from opentelemetry import context as otel_context
from prometheus_client import generate_latest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from dispatcher import operator_delivery, outcomes, queue
from dispatcher.circuit import Circuit, CircuitRules, Health
from dispatcher.lanes import CLAIM_AHEAD, Lane, Lanes
from dispatcher.listener import listen_forever
from dispatcher.retention import purge_forever
from dispatcher.retry import RetryPolicy
from dispatcher.sender import AttemptResult, Delivery, Sender, internal_error
from service.core import operator_events, tracing
from service.core.callback_health import fail_stragglers
from service.core.changes import log_changes
from service.core.database import DATABASE_DOWN, create_pool
from service.core.egress import EgressProxy, egress_session
from service.core.encryption import load_keyring
from service.core.metrics import CLAIMS, IN_FLIGHT
from service.core.runtime import (
    loop_factory,
    package_version,
    tune_garbage_collector,
    wait_until_set,
)
from service.core.settings import Settings
from service.core.stored_secrets import check_keys_open_stored_secrets

log = logging.getLogger(__name__)
FLUSH_BATCH = 500
# A write-back waits this long after the previous one began, unless a batch is full, so that one
# commit records many attempts: a commit per handful of attempts cost PostgreSQL more CPU per
# attempt than the attempt itself. It delays only the recording, never a request.
FLUSH_WINDOW = 0.01
STRAGGLER_SWEEP = 1.0  # seconds between looks for notifications of a disabled callback
# The dispatchers of this process: the in-flight gauge adds up their requests when it is read,
# instead of an increment and a decrement (each under the metric's lock) per attempt.
_RUNNING: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
IN_FLIGHT.set_function(lambda: sum(len(d._in_flight) for d in list(_RUNNING)))


class Dispatcher:
    def __init__(self, settings: Settings, dsn: str, dns: AbstractResolver | None = None) -> None:
        self._settings = settings
        self._dsn = dsn
        self._dns = dns  # None: the system resolver (tests inject a scripted one)
        self._policy = RetryPolicy(settings.retry_schedule, settings.retry_jitter)
        self._keyring = load_keyring(settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._recording = queue.Recording(
            self._policy, settings.disable_after, settings.failing_after, self.worker_id
        )
        self._wake = asyncio.Event()
        # Whether the next claim also looks for callbacks to take on (new work was announced, or
        # a poll interval passed, in which retries may have fallen due), not only refills its
        # lanes.
        self._look_for_new = True
        self._results: list[AttemptResult] = []
        self._results_ready = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._lanes = Lanes(
            CircuitRules(
                settings.circuit_failures,
                settings.circuit_probe_interval,
                settings.circuit_probe_max_interval,
            )
        )
        self._pace_timers: dict[int, asyncio.TimerHandle] = {}
        # A claim and a renewal never overlap: a renewal that gives up an idle callback must
        # not race a claim that just gave it work.
        self._lanes_lock = asyncio.Lock()
        self._stopping = False
        self._background: list[asyncio.Task[None]] = []
        self._releases: set[asyncio.Task[None]] = set()

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
        # Operational events go out through a session of their own: a failing operator
        # endpoint never takes a partner's connection or request slot.
        self._operator_session = egress_session(
            self._settings.allowed_networks, operator_delivery.IN_FLIGHT, self._dns, proxy
        )
        self._operator = operator_delivery.OperatorDelivery(
            self._pool,
            Sender(
                self._operator_session,
                self._settings.delivery_timeout,
                f"callbackhub/{package_version()}",
                self._keyring,
            ),
            self._policy,
            self.worker_id,
            self.lease_seconds,
            self._settings.poll_interval,
        )
        self._background = [
            asyncio.create_task(self._claim_loop(), name="claim-loop"),
            asyncio.create_task(self._flush_loop(), name="flush-loop"),
            asyncio.create_task(listen_forever(self._dsn, self._new_work), name="listener"),
            asyncio.create_task(self._operator.run(), name="operator-events"),
            asyncio.create_task(purge_forever(self._pool, self._settings), name="retention"),
            asyncio.create_task(self._renew_loop(), name="renew-loop"),
        ]
        _RUNNING.add(self)
        log.info("dispatcher started", extra={"worker": self.worker_id})

    # Claiming, lane by lane.

    @property
    def _sendable_for(self) -> float:
        """How long after a claim or renewal began a lane may still start requests: its
        ownership and delivery leases outlast any request started before then."""
        return self._settings.lease_margin * 0.9

    def _claim_request(self) -> queue.ClaimRequest:
        now = time.monotonic()
        for lane in self._lanes:
            lane.measure_rate(now)
        wants = {lane.callback_id: lane.want(now) for lane in self._lanes}
        probes = [lane.callback_id for lane in self._lanes if lane.circuit.wants_probe(now)]
        per_slot = self._settings.max_per_callback
        held = self._lanes.waiting() + len(self._in_flight)
        room = CLAIM_AHEAD * self._settings.max_in_flight - held
        new_lanes = max(0, min(self._settings.claim_batch, room // (CLAIM_AHEAD * per_slot)))
        if not self._look_for_new:
            new_lanes = 0
        return queue.ClaimRequest(wants, new_lanes, CLAIM_AHEAD, per_slot, probes)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            more = False
            async for attempt in _until_database_answers("claim"):
                with attempt:
                    more = await self._claim_once()
            if not more and not await wait_until_set(self._wake, self._settings.poll_interval):
                self._look_for_new = True  # retries fall due without an announcement
                self._may_have_more(self._lanes)

    def _new_work(self) -> None:
        self._look_for_new = True
        self._may_have_more(self._lanes)
        self._wake.set()
        self._operator.wake()

    def _may_have_more(self, lanes: Iterable[Lane]) -> None:
        """Due work may have appeared for ``lanes``: claim for them again."""
        for lane in lanes:
            lane.signs += 1

    async def _claim_once(self) -> bool:
        """Claim for the lanes that want more and for new ones; True when there is probably
        more to claim right away."""
        async with self._lanes_lock:
            request = self._claim_request()
            if request.new_lanes <= 0 and not any(request.wants.values()):
                return False
            started, started_ns = time.monotonic(), time.time_ns()
            # Looked only when there was room to take on a lane: a look the held deliveries
            # ruled out stays due, for when the lanes drain (else a drained process idled
            # until the next poll while other callbacks had work).
            if request.new_lanes > 0:
                self._look_for_new = False
            signs = {lane.callback_id: lane.signs for lane in self._lanes.among(request.wants)}
            claimed = await queue.claim(self._pool, request, self.lease_seconds, self.worker_id)
            CLAIMS.labels("deliveries" if claimed.deliveries else "empty").inc()
            self._mark_drained(request.wants, claimed.deliveries, signs)
            if tracing.enabled() and claimed.deliveries:
                _record_claim_span(started_ns, claimed.deliveries)
            self._take_in(claimed, started + self._sendable_for)
        self._pump()
        if request.new_lanes > 0 and claimed.limits.keys() - request.wants.keys():
            self._look_for_new = True  # it took on new lanes (half of those free): look again
        return bool(claimed.deliveries) and not self._stopping

    def _mark_drained(
        self, wants: dict[int, int], deliveries: list[Delivery], signs: dict[int, int]
    ) -> None:
        """Lanes that got less than they asked for have no more due work for now, unless a
        sign of more came while the claim ran (their count moved past the one recorded):
        asking again at every turn of the claim loop cost a futile claim (a dispatcher with
        idle lanes made three empty claims for every delivery)."""
        got = Counter(d.callback_id for d in deliveries)
        for lane in self._lanes.among(wants):
            want = wants[lane.callback_id]
            if want > 0 and got[lane.callback_id] < want:
                lane.drained_at = signs[lane.callback_id]

    def _take_in(self, claimed: queue.Claimed, sendable_until: float) -> None:
        default = self._settings.max_per_callback
        for callback_id, stored in claimed.health.items():
            if self._lanes.get(callback_id) is None:  # a new lane: its circuit as stored
                lane = self._lanes.open(callback_id, default, sendable_until)
                lane.circuit = Circuit.restored(
                    self._lanes.rules,
                    stored.failures,
                    stored.open,
                    stored.probe_interval,
                    stored.last_error,
                )
        for delivery in claimed.deliveries:
            lane = self._lanes.open(delivery.callback_id, default, sendable_until)
            lane.waiting.append(delivery)
        now = time.monotonic()
        for callback_id, (max_in_flight, max_per_second) in claimed.limits.items():
            lane = self._lanes.open(callback_id, default, sendable_until)
            lane.limit(max_in_flight or default, max_per_second)
            self._give_back(lane.surplus(now))  # claimed as its circuit opened
            self._lanes.wake(lane)

    def _give_back(self, deliveries: list[Delivery]) -> None:
        """Return claimed deliveries unsent and uncharged (a circuit opened, a Retry-After
        paused the callback), in the background: the lane's ownership keeps other workers off
        the callback until its health is recorded."""
        if not deliveries:
            return
        ids = [d.notification_id for d in deliveries]
        callbacks = {d.callback_id for d in deliveries}
        task = asyncio.create_task(self._release(ids, callbacks))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, ids: list[str], callbacks: set[int]) -> None:
        async for attempt in _until_database_answers("giving back deliveries"):
            with attempt:
                await queue.release_leases(self._pool, ids, self.worker_id)
        # Due again: the lanes claim them once their circuit or pause lets them.
        self._may_have_more(self._lanes.among(callbacks))

    # Sending: lanes take turns for the process's in-flight budget.

    def _pump(self) -> None:
        """Start every request the limits allow now, each in a task of its own."""
        while (delivery := self._next_to_send()) is not None:
            self._count_in_flight(delivery, asyncio.create_task(self._deliver(delivery)))

    def _count_in_flight(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        self._in_flight[delivery.notification_id] = task  # the gauge reads it (_RUNNING)

    def _next_to_send(self) -> Delivery | None:
        """The next delivery, in the lanes' turns, that the limits allow to start now (None:
        none may); the caller counts it in flight."""
        if self._stopping or len(self._in_flight) >= self._settings.max_in_flight:
            return None
        now = time.monotonic()
        lane, paced = self._lanes.next_ready(now)
        for waiting_lane, wait in paced:
            self._wake_after(waiting_lane, wait)
        if lane is None:
            return None
        delivery = lane.take(now)
        self._lanes.wake(lane)
        return delivery

    def _wake_after(self, lane: Lane, seconds: float) -> None:
        """Give a paced lane its turn again when its pacer allows the next request."""
        if lane.callback_id in self._pace_timers:
            return

        def paced() -> None:
            del self._pace_timers[lane.callback_id]
            self._lanes.wake(lane)
            self._pump()

        loop = asyncio.get_running_loop()
        self._pace_timers[lane.callback_id] = loop.call_later(seconds, paced)

    def _sent(self, delivery: Delivery, result: AttemptResult | None) -> None:
        """A request is over: its slot is free for the lane's next one (claim more when the
        lane runs low, without waiting for this result to be recorded), and its answer
        tells the lane's circuit how the partner is."""
        self._in_flight.pop(delivery.notification_id, None)
        lane = self._lanes.get(delivery.callback_id)
        if lane is not None:
            lane.in_flight -= 1
            now = time.monotonic()
            if result is not None:
                lane.circuit.record(result, now)
                self._give_back(lane.surplus(now))
            self._lanes.wake(lane)
            if lane.want(now) > 0:
                self._wake.set()

    # Keeping the lanes: ownership and the leases of what waits, renewed; idle lanes closed.

    async def _renew_loop(self) -> None:
        interval = min(5.0, self._settings.lease_margin / 3)
        swept_at = time.monotonic()
        while True:
            await asyncio.sleep(interval)  # a period, not a wait for something
            async for attempt in _until_database_answers("renewing leases"):
                with attempt:
                    await self._renew()
            if time.monotonic() - swept_at >= STRAGGLER_SWEEP:
                swept_at = time.monotonic()
                async for attempt in _until_database_answers("failing stragglers"):
                    with attempt:
                        await fail_stragglers(self._pool)

    async def _renew(self) -> None:
        async with self._lanes_lock:
            busy = [lane for lane in self._lanes if not lane.idle]
            # An idle lane whose circuit is not recorded yet stays: its ownership keeps other
            # workers off a callback whose circuit just opened.
            idle = [
                lane.callback_id
                for lane in self._lanes
                if lane.idle and not lane.circuit.unrecorded
            ]
            waiting = [d.notification_id for lane in busy for d in lane.waiting]
            started = time.monotonic()
            owned = [lane.callback_id for lane in busy]
            still = await queue.renew(
                self._pool, self.worker_id, self.lease_seconds, owned, waiting, idle
            )
            for callback_id in idle:
                self._close_lane(callback_id)
            lost = [lane for lane in busy if lane.callback_id not in still]
            for lane in busy:
                if lane.callback_id in still:
                    lane.sendable_until = started + self._sendable_for
                    self._lanes.wake(lane)
            if lost:
                await self._give_up(lost)
        self._pump()

    async def _give_up(self, lanes: list[Lane]) -> None:
        """Lanes whose ownership lapsed (the database was away too long): another worker may
        own them now, so what waits goes back, uncharged; what is in flight finishes."""
        unsent = [d.notification_id for lane in lanes for d in lane.waiting]
        log.warning("gave up %d callbacks whose ownership lapsed", len(lanes))
        for lane in lanes:
            lane.waiting.clear()
            if lane.idle:
                self._close_lane(lane.callback_id)
        await queue.release_leases(self._pool, unsent, self.worker_id)

    def _close_lane(self, callback_id: int) -> None:
        self._lanes.close(callback_id)
        timer = self._pace_timers.pop(callback_id, None)
        if timer is not None:
            timer.cancel()

    async def _deliver(self, delivery: Delivery) -> None:
        """Send ``delivery``, then carry on with the next one the lanes' turns give this task,
        until none may start: the next request leaves the moment a slot frees, without a new
        task and a turn of the event loop in between."""
        this = self._in_flight[delivery.notification_id]
        following: Delivery | None = delivery
        while following is not None:
            await self._attempt(following)
            following = self._next_to_send()
            if following is not None:
                self._count_in_flight(following, this)

    async def _attempt(self, delivery: Delivery) -> None:
        """Make one attempt and queue its result for the write-back, whatever it raised: an
        attempt that is never recorded would be claimed again at every lease expiry, forever.
        (A cancellation at shutdown is the exception: its lease is given back uncharged.)"""
        started_at = datetime.now(UTC)
        result: AttemptResult | None = None
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
            self._sent(delivery, result)
        self._results.append(result)
        self._results_ready.set()

    # Recording outcomes.

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._results_ready.wait()
            began = loop.time()
            await self._flush_batch()
            if not self._unflushed():
                self._results_ready.clear()
            rest = FLUSH_WINDOW - (loop.time() - began)
            if rest > 0 and len(self._results) < FLUSH_BATCH:
                await asyncio.sleep(rest)  # a batching window, not a wait for something

    def _unrecorded_health(self) -> tuple[list[tuple[int, Health]], list[tuple[Circuit, int]]]:
        """The health of the lanes whose circuit changed since it was last recorded, and the
        versions it is recorded at."""
        now = time.monotonic()
        changed = [lane for lane in self._lanes if lane.circuit.unrecorded]
        health = [(lane.callback_id, lane.circuit.health(now)) for lane in changed]
        return health, [(lane.circuit, lane.circuit.version) for lane in changed]

    def _unflushed(self) -> bool:
        return bool(self._results) or any(lane.circuit.unrecorded for lane in self._lanes)

    async def _flush(self) -> None:
        """Write back everything finished so far (at shutdown)."""
        while self._unflushed():
            await self._flush_batch()
        self._results_ready.clear()

    async def _flush_batch(self) -> None:
        """Write back up to FLUSH_BATCH finished attempts and the callbacks' health; on a
        database error keep them and try again."""
        batch = self._results[:FLUSH_BATCH]
        health, versions = self._unrecorded_health()
        finished = queue.Finished([], [])
        async for attempt in _until_database_answers("recording outcomes"):
            with attempt:
                finished = await queue.finish(self._pool, batch, self._recording, health)
        del self._results[: len(batch)]
        for circuit, version in versions:
            circuit.recorded = version
        outcomes.observe(batch, finished.verdicts, self._settings.metrics_per_partner)
        log_changes(finished.changes)
        operator_events.count(finished.changes)
        # Successors of ordered deliveries are released, in lanes this worker has: claim.
        ordered = {r.delivery.callback_id for r in batch if r.delivery.ordered}
        self._may_have_more(self._lanes.among(ordered))
        self._wake.set()

    # Stopping.

    async def stop(self) -> None:
        """Stop claiming, let in-flight requests finish within the grace period, record them,
        and give back the leases of those that did not finish or never started, and the
        callbacks this worker owned."""
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
        for timer in self._pace_timers.values():
            timer.cancel()
        unfinished += [d.notification_id for lane in self._lanes for d in lane.waiting]
        owned = [lane.callback_id for lane in self._lanes]
        try:
            await asyncio.wait_for(self._flush(), self._settings.shutdown_grace + 5)
            await _wait_quietly(list(self._releases))
            if unfinished or owned:
                await queue.release_leases(self._pool, unfinished, self.worker_id, owned)
        except (TimeoutError, *DATABASE_DOWN) as error:
            log.warning("could not record everything at shutdown (leases will expire): %s", error)
        await self._session.close()
        await self._operator_session.close()
        await self._pool.close()
        _RUNNING.discard(self)
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
    tune_garbage_collector()
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
