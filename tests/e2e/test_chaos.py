"""Fault injection around real ``callbackhub`` processes: partners that misbehave in every way
a network allows, and a database that turns read-only.

The bounded sizes run in ``make test``; the full ones (marked ``chaos``) in ``make chaos``.
The process crash and database outage scenarios are in ``test_crash_recovery.py``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support import processes
from tests.support.chaos import (
    SLOW_BODY,
    SLOW_HEAD,
    Emitter,
    Faults,
    Listening,
    RawPartner,
    Tally,
    Target,
    accepted_count,
    assert_clean_answers,
    assert_no_errors_logged,
    assert_problem_503,
    attempt_logs,
    conclude,
    delivery_rows,
    first_receipts,
    register,
    reset_connection,
    settled,
)
from tests.support.fleet import Fleet
from tests.support.polling import eventually
from tests.support.receiver import Receiver, hang, status
from tests.support.tokens import auth

FULL = pytest.mark.skipif(
    not os.environ.get("CALLBACKHUB_CHAOS_FULL"), reason="full size runs with `make chaos`"
)
SCHEDULE = (0.2, 0.5, 1.0)  # processes.FAST_SETTINGS
MAX_ATTEMPTS = len(SCHEDULE) + 1


def sizes(bounded: object, full: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "size",
        [
            pytest.param(bounded, id="bounded"),
            pytest.param(full, id="full", marks=[pytest.mark.chaos, FULL]),
        ],
    )


# Receivers that misbehave.


@dataclass
class Flaky:
    """Answers 500 to the first attempt of every other notification, 200 otherwise."""

    attempts: Counter[str] = field(default_factory=Counter)
    answered_ok: Counter[str] = field(default_factory=Counter)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        webhook_id = request.headers["webhook-id"]
        self.attempts[webhook_id] += 1
        if self.attempts[webhook_id] == 1 and fails_first(webhook_id):
            return web.Response(status=500, text="try again")
        self.answered_ok[webhook_id] += 1
        return web.Response(text="ok")


def fails_first(webhook_id: str) -> bool:
    return uuid.UUID(webhook_id).int % 2 == 0


def gaps(log: list[asyncpg.Record]) -> list[float]:
    """Seconds between the end of each attempt and the start of the next."""
    return [
        (later["started_at"] - earlier["started_at"]).total_seconds()
        - earlier["duration_ms"] / 1000
        for earlier, later in pairwise(log)
    ]


def assert_schedule_followed(logs: dict[str, list[asyncpg.Record]], ids: Iterable[str]) -> None:
    """Each gave up after exactly the attempts the schedule allows, never retrying early."""
    for notification_id in ids:
        log = logs[notification_id]
        assert [a["attempt"] for a in log] == list(range(1, MAX_ATTEMPTS + 1)), log
        for gap, scheduled in zip(gaps(log), SCHEDULE, strict=True):
            assert gap >= scheduled - 0.02, (notification_id, gaps(log))


@dataclass(frozen=True)
class Partners:
    rounds: int  # each round emits 8 healthy, 4 flaky, 1 to each broken partner, 1 gone


@sizes(Partners(4), Partners(25))
async def test_misbehaving_partners_do_not_hold_up_the_others(
    database: str, fleet: Fleet, size: Partners
) -> None:
    healthy = await fleet.receiver()
    flaky_responder = Flaky()
    flaky = await fleet.receiver(Receiver(default=flaky_responder))
    hanging = await fleet.receiver(Receiver(default=hang()))
    gone = await fleet.receiver(Receiver(default=status(410, body="gone")))
    resetting = await fleet.partner(RawPartner(reset_connection))
    slow_head = await fleet.partner(RawPartner(SLOW_HEAD))
    slow_body = await fleet.partner(RawPartner(SLOW_BODY))
    broken: list[Listening] = [hanging, resetting, slow_head, slow_body]
    everyone: list[Listening] = [healthy, flaky, *broken, gone]

    # The circuit breaker would hold the broken partners' notifications back, one probe at a
    # time, rather than let them fail: here the schedule runs its course for each of them
    # (the circuit has tests/dispatcher/test_circuit_breaker.py).
    env = processes.callbackhub_env(database, fleet.logs / "data", circuit_failures="1000")
    server = fleet.add(processes.serve("serve", env, fleet.logs))
    await processes.start(server)
    targets = await register(server.url, everyone)
    target = {id(partner): t for partner, t in zip(everyone, targets, strict=True)}
    target[id(gone)] = replace(target[id(gone)], refusals=frozenset({409}))
    cycle = [target[id(healthy)]] * 8 + [target[id(flaky)]] * 4
    cycle += [target[id(partner)] for partner in [*broken, gone]]
    emitter = fleet.emitter(
        Emitter(lambda: server.url, cycle, concurrency=8, total=size.rounds * len(cycle))
    )
    await emitter.done()

    def of(partner: Listening) -> list[str]:
        return [i for i, t in emitter.target_of.items() if t is target[id(partner)]]

    # The healthy partner got everything at the first attempt, while the broken ones were
    # still being retried.
    async def healthy_missing() -> set[str]:
        return set(of(healthy)) - set(first_receipts([healthy])[0])

    await eventually(healthy_missing, lambda missing: not missing, timeout=30)
    rows = await delivery_rows(database)
    assert any(rows[i]["status"] in ("queued", "delivering") for i in of(hanging)), "held up"
    assert all(rows[i]["attempts"] == 1 for i in of(healthy))

    await settled(database, emitter.accepted, timeout=120)
    rows = await delivery_rows(database)
    logs = await attempt_logs(database, emitter.accepted)

    # Flaky: every notification delivered, at the second attempt when the first got a 500.
    for notification_id in of(flaky):
        assert rows[notification_id]["status"] == "delivered"
        statuses = [a["response_status"] for a in logs[notification_id]]
        assert statuses == ([500, 200] if fails_first(notification_id) else [200])
        assert all(gap >= SCHEDULE[0] - 0.02 for gap in gaps(logs[notification_id]))

    # Hanging, resetting and slow partners: failed after the whole schedule, visibly.
    for partner in broken:
        assert {rows[i]["status"] for i in of(partner)} == {"failed"}
        assert_schedule_followed(logs, of(partner))
        assert Counter(first_receipts([partner])[1].values()) == {MAX_ATTEMPTS: len(of(partner))}
    for partner in (hanging, slow_head, slow_body):
        assert {rows[i]["failure_reason"] for i in of(partner)} == {"timeout"}

    # Gone: the callback is disabled at the first 410, nothing of it is retried.
    assert {rows[i]["status"] for i in of(gone)} == {"failed"}
    assert {rows[i]["failure_reason"] for i in of(gone)} == {"gone"}
    assert max(first_receipts([gone])[1].values()) == 1
    await assert_callback_gone(server.url, target[id(gone)])
    assert all(answer.status == 409 for answer in emitter.refused)

    result = receiver_faults_tally(emitter, rows, healthy, flaky_responder, of, [*broken, gone])
    print(f"\n{result.line()}")
    assert not result.lost
    assert_clean_answers(emitter)
    assert_no_errors_logged(server)
    assert await server.terminate() == 0


def receiver_faults_tally(
    emitter: Emitter,
    rows: dict[str, asyncpg.Record],
    healthy: Receiver,
    flaky: Flaky,
    of: Callable[[Listening], list[str]],
    broken: list[Listening],
) -> Tally:
    """Delivered: recorded as delivered. The broken partners' notifications may instead end
    failed (visibly, ``failed=``); anything else is lost. ``recovery_s`` here: the slowest
    healthy delivery after its 202."""
    accepted = set(emitter.accepted)
    delivered = {i for i in accepted if rows[i]["status"] == "delivered"}
    may_fail = {i for partner in broken for i in of(partner)}
    failed = {i for i in accepted & may_fail if rows[i]["status"] == "failed"}
    first, seen = first_receipts([healthy])
    duplicates = sum(seen[i] - 1 for i in of(healthy))
    duplicates += sum(n - 1 for n in flaky.answered_ok.values())
    slowest = max(first[i] - emitter.accepted[i] for i in of(healthy))
    lost = sorted(accepted - delivered - failed)
    extra = f" failed={len(failed)}"
    return Tally("receiver_faults", len(accepted), len(delivered), duplicates, lost, slowest, extra)


async def assert_callback_gone(api: str, target: Target) -> None:
    url = f"{api}/partners/{target.partner_id}/callbacks/{target.notification_type}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=auth("callbacks:read")) as response,
    ):
        callback = await response.json()
    assert callback["enabled"] is False
    assert callback["disabledReason"] == "gone"


@dataclass(frozen=True)
class ReadOnly:
    refusals: int  # 503 answers to collect while the database is read-only
    after: int  # notifications accepted afterwards


@sizes(ReadOnly(20, 50), ReadOnly(300, 1_000))
async def test_read_only_database_makes_echo_answer_503(
    server_dsn: str, database: str, fleet: Fleet, size: ReadOnly
) -> None:
    receivers = [await fleet.receiver() for _ in range(2)]
    env = processes.callbackhub_env(database, fleet.logs / "data")
    server = fleet.add(processes.serve("serve", env, fleet.logs))
    await processes.start(server)
    targets = await register(server.url, receivers)
    emitter = fleet.emitter(Emitter(lambda: server.url, targets, concurrency=4))
    await eventually(accepted_count(emitter), lambda n: n >= 50)

    name = urlsplit(database).path.lstrip("/")
    await set_read_only(server_dsn, name, True)
    read_only_from = time.monotonic()

    async def refusals() -> int:
        return sum(1 for a in emitter.answers if a.status == 503 and a.sent_at >= read_only_from)

    await eventually(refusals, lambda n: n >= size.refusals, timeout=60)
    read_only_until = time.monotonic()
    await set_read_only(server_dsn, name, False)
    faults = Faults(database)
    await faults.ended_now()
    accepted_before = len(emitter.accepted)
    await eventually(accepted_count(emitter), lambda n: n >= accepted_before + size.after, 60)
    emitter.stop()
    await emitter.done()

    during = [
        a for a in emitter.answers if a.sent_at >= read_only_from and a.done_at <= read_only_until
    ]
    assert during and all(a.status == 503 for a in during), Counter(a.status for a in during)
    for answer in during:
        assert_problem_503(answer)
    assert_clean_answers(emitter)
    await conclude("read_only_database", emitter, receivers, faults)
    rows = await delivery_rows(database, emitter.accepted)
    assert {row["status"] for row in rows.values()} == {"delivered"}
    assert_no_errors_logged(server)
    assert await server.terminate() == 0


async def set_read_only(server_dsn: str, name: str, read_only: bool) -> None:
    """Make every new transaction in the database read-only (or not), and end the sessions
    that are open, so that the new setting applies to everything from now on."""
    assert re.fullmatch(r"test_[0-9a-f]+", name), name  # an identifier we may format into SQL
    admin = await asyncpg.connect(server_dsn)
    try:
        value = "on" if read_only else "off"
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
        ended = await admin.fetch(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
        pids = [row["pid"] for row in ended]

        async def still_there() -> int:
            return int(
                await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1::int[])", pids
                )
            )

        await eventually(still_there, lambda n: n == 0)
    finally:
        await admin.close()
