"""Process-level reliability: real ``callbackhub`` processes are killed with SIGKILL, or lose
their PostgreSQL, in the middle of a run; afterwards every notification that echo accepted
with 202 has reached its partner (counted by webhook-id: duplicates allowed, losses not).

The bounded sizes run in ``make test``; the full ones (marked ``chaos``) in ``make chaos``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.support import processes
from tests.support.chaos import (
    Emitter,
    Faults,
    accepted_count,
    assert_all_delivered_in_database,
    assert_bodies_intact,
    assert_clean_answers,
    assert_no_errors_logged,
    assert_problem_503,
    conclude,
    delivery_rows,
    first_receipts,
    register,
)
from tests.support.controlled_postgres import StopMode
from tests.support.fleet import ControlledDatabase, Fleet
from tests.support.polling import eventually
from tests.support.receiver import Receiver

FULL = pytest.mark.skipif(
    not os.environ.get("CALLBACKHUB_CHAOS_FULL"), reason="full size runs with `make chaos`"
)


def sizes(bounded: object, full: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "size",
        [
            pytest.param(bounded, id="bounded"),
            pytest.param(full, id="full", marks=[pytest.mark.chaos, FULL]),
        ],
    )


def delivered_count(receivers: list[Receiver]) -> int:
    return len(first_receipts(receivers)[0])


async def wait_delivered(receivers: list[Receiver], count: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    async def probe() -> int:
        return delivered_count(receivers)

    await eventually(probe, lambda n: n >= count, timeout=timeout)


def latency(low: float, high: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A partner that takes a moment to answer, so that deliveries are in flight at any time."""

    async def respond(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(random.uniform(low, high))  # the partner's latency, not a wait
        return web.Response(text="ok")

    return respond


@dataclass(frozen=True)
class Kills:
    notifications: int
    kills: int
    seed: int = 20240611


@sizes(Kills(1_000, 1), Kills(5_000, 5))
async def test_kill_9_of_serve_in_flight_loses_nothing(
    database: str, fleet: Fleet, size: Kills
) -> None:
    receivers = [await fleet.receiver(Receiver(default=latency(0.1, 0.3))) for _ in range(4)]
    env = processes.callbackhub_env(database, fleet.logs / "data")
    server = fleet.add(processes.serve("serve", env, fleet.logs))
    await processes.start(server)
    targets = await register(server.url, receivers)
    emitter = fleet.emitter(
        Emitter(lambda: server.url, targets, concurrency=16, total=size.notifications)
    )

    rng = random.Random(size.seed)
    moments = sorted(rng.uniform(0.1, 0.8) for _ in range(size.kills)) if size.kills > 1 else [0.4]
    faults = Faults(database)
    for fraction in moments:
        await wait_delivered(receivers, int(fraction * size.notifications))
        server.kill()
        pending = await faults.ended_now()
        print(f"kill -9 with {len(pending)} notifications pending")
        await processes.restart(server)
    await emitter.done()

    result = await conclude("kill9_serve", emitter, receivers, faults)
    assert result.accepted == size.notifications
    assert all(pending for _, pending in faults.ended), "a kill hit no notification in flight"
    assert_clean_answers(emitter)
    assert_bodies_intact(emitter, receivers)
    await assert_all_delivered_in_database(database, emitter.accepted)
    assert_no_errors_logged(server)
    assert await server.terminate() == 0


@dataclass(frozen=True)
class Takeover:
    notifications: int
    receivers: int


@sizes(Takeover(400, 4), Takeover(3_000, 8))
async def test_second_dispatcher_takes_over_the_leases_of_a_killed_one(
    database: str, fleet: Fleet, size: Takeover
) -> None:
    receivers = [
        await fleet.receiver(Receiver(default=latency(0.05, 0.2))) for _ in range(size.receivers)
    ]
    env = processes.callbackhub_env(database, fleet.logs / "data")
    api = fleet.add(processes.serve("api", env, fleet.logs, dispatcher=False))
    await processes.start(api)
    dispatchers = [
        fleet.add(processes.dispatcher(name, env, fleet.logs))
        for name in ("dispatcher-a", "dispatcher-b")
    ]
    await asyncio.gather(*(processes.start(d) for d in dispatchers))
    targets = await register(api.url, receivers)
    emitter = fleet.emitter(
        Emitter(lambda: api.url, targets, concurrency=16, total=size.notifications)
    )

    await wait_delivered(receivers, size.notifications // 4)

    async def leases_held() -> dict[int, int]:
        rows = await delivery_rows(database)
        return {
            d.pid: sum(
                r["status"] == "delivering" and f":{d.pid}:" in (r["locked_by"] or "")
                for r in rows.values()
            )
            for d in dispatchers
        }

    # The one that holds leases is killed: a callback is delivered by one dispatcher at a
    # time, so on a busy machine either of them may hold every lane for a while.
    held = await eventually(leases_held, lambda counts: max(counts.values()) > 0)
    doomed = max(dispatchers, key=lambda d: held[d.pid])
    survivor = next(d for d in dispatchers if d is not doomed)
    doomed.kill()
    killed_at = time.monotonic()
    sent_before_kill = {r.headers["webhook-id"] for rx in receivers for r in rx.received}
    faults = Faults(database)
    await faults.ended_now()
    rows = await delivery_rows(database)
    orphaned = [i for i, row in rows.items() if f":{doomed.pid}:" in (row["locked_by"] or "")]
    await emitter.done()

    result = await conclude("dispatcher_takeover", emitter, receivers, faults)
    assert result.accepted == size.notifications
    assert orphaned, "the killed dispatcher held no leases"
    # Its lanes held deliveries claimed ahead that it had not sent yet: they arrive too.
    assert set(orphaned) - sent_before_kill, "the killed dispatcher had nothing claimed ahead"
    await assert_all_delivered_in_database(database, emitter.accepted)
    after = await delivery_rows(database, orphaned)
    assert all(after[i]["attempts"] >= 2 for i in orphaned), "orphaned leases not claimed again"
    arrivals = {
        r.headers["webhook-id"]: r.at for rx in receivers for r in rx.received if r.at > killed_at
    }
    assert set(orphaned) <= set(arrivals), "the survivor did not send what the dead one held"
    assert_clean_answers(emitter)
    assert_bodies_intact(emitter, receivers)
    assert survivor.running()
    for process in (survivor, api):
        assert_no_errors_logged(process)
    assert await survivor.terminate() == 0
    assert await api.terminate() == 0


@dataclass(frozen=True)
class Outage:
    seconds: float
    mode: StopMode
    before: int  # notifications accepted before the database goes away
    after: int  # accepted after it is back, before the emitter stops


@sizes(Outage(3.0, "fast", 100, 100), Outage(10.0, "immediate", 1_000, 1_000))
async def test_postgres_stopped_mid_run_loses_nothing_and_echo_answers_503(
    controlled_database: ControlledDatabase, fleet: Fleet, size: Outage
) -> None:
    postgres, dsn = controlled_database.server, controlled_database.dsn
    receivers = [await fleet.receiver() for _ in range(3)]
    env = processes.callbackhub_env(dsn, fleet.logs / "data")
    server = fleet.add(processes.serve("serve", env, fleet.logs))
    await processes.start(server)
    pid = server.pid
    targets = await register(server.url, receivers)
    emitter = fleet.emitter(Emitter(lambda: server.url, targets, concurrency=4))

    await eventually(accepted_count(emitter), lambda n: n >= size.before)
    await postgres.stop_async(size.mode)
    down_from = time.monotonic()
    await asyncio.sleep(size.seconds)  # the outage itself
    down_until = time.monotonic()
    await postgres.start_async()
    faults = Faults(dsn)
    await faults.ended_now()
    accepted_before_back = len(emitter.accepted)
    await eventually(accepted_count(emitter), lambda n: n >= accepted_before_back + size.after, 60)
    emitter.stop()
    await emitter.done()

    during = [a for a in emitter.answers if a.sent_at >= down_from and a.done_at <= down_until]
    assert during, "no echo request was made while the database was down"
    assert all(a.status == 503 for a in during), {a.status for a in during}
    for answer in during:
        assert_problem_503(answer)
    assert_clean_answers(emitter)
    assert not [a for a in emitter.answers if a.error], "echo's process stopped answering"

    await conclude(f"postgres_stopped_{size.mode}", emitter, receivers, faults)
    await assert_all_delivered_in_database(dsn, emitter.accepted)
    assert server.running() and server.pid == pid, "callbackhub had to be restarted"
    assert_no_errors_logged(server)
    assert await server.terminate() == 0
