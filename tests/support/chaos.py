"""The fault-injection harness: partners wired to real receivers, an emitter that keeps calling
echo the way a real emitter would (retrying with the same Idempotency-Key until it hears 202),
and the ledger that checks by webhook-id that everything accepted was delivered.

Every scenario prints one summary line:
``scenario=<name> accepted=N delivered=N duplicates=N lost=0 recovery_s=X.X``
where ``recovery_s`` is the time from the end of a fault (the kill, the database answering
again) until every notification that was pending at that moment (queued or leased) has been
delivered and recorded; the largest over the faults of a run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import asyncpg

from tests.support.api import create_partner, put_callback
from tests.support.polling import eventually
from tests.support.processes import Process
from tests.support.receiver import Received
from tests.support.tokens import auth


class Listening(Protocol):
    """A partner's server that records what it receives (``Receiver``, ``RawPartner``)."""

    url: str
    received: list[Received]


@dataclass(frozen=True, eq=False)
class Target:
    """One partner's callback for one notification type, and the receiver behind it.
    ``refusals``: statuses echo may answer for it once the partner is gone (409)."""

    partner_id: str
    notification_type: int
    receiver: Listening
    refusals: frozenset[int] = frozenset()


async def register(
    api: str, receivers: Iterable[Listening], notification_type: int = 2
) -> list[Target]:
    """A partner per receiver, each with a callback for ``notification_type``."""
    targets = []
    async with aiohttp.ClientSession(base_url=api) as session:
        for receiver in receivers:
            partner_id = await create_partner(session, "Chaos Partner")
            await put_callback(session, partner_id, notification_type, receiver.url, status=201)
            targets.append(Target(partner_id, notification_type, receiver))
    return targets


def payload(notification_type: int, n: int) -> bytes:
    """A valid payload of the type, unique per ``n``, with a fresh subject each time."""
    now = datetime.now(UTC).isoformat()
    subject = {"processUniqueId": str(uuid.uuid4())}
    bodies: dict[int, dict[str, Any]] = {
        1: {"statusId": n, "statusDescription": f"state {n}", "changedAt": now},
        2: {
            "noteUniqueId": str(uuid.uuid4()),
            "subject": f"note {n}",
            "text": "x",
            "createdAt": now,
        },
        3: {
            "documentUniqueId": str(uuid.uuid4()),
            "documentTypeId": 1,
            "fileName": f"doc-{n}.pdf",
            "action": "created",
            "occurredAt": now,
        },
    }
    return json.dumps({**subject, **bodies[notification_type]}).encode()


@dataclass
class Answer:
    """One HTTP exchange with echo (or the failure to have one)."""

    sent_at: float
    done_at: float
    status: int | None
    content_type: str = ""
    body: bytes = b""
    error: str | None = None


@dataclass
class Emitter:
    """Emits notifications through echo with bounded concurrency.

    ``api`` is asked for the base URL before every request, so a restarted server on a new
    port is found. Each notification is retried on 503 or a broken connection with its
    Idempotency-Key until it gets its 202; anything else is recorded as unexpected.
    """

    api: Callable[[], str]
    targets: list[Target]
    concurrency: int = 16
    total: int | None = None  # None: until stop()
    give_up_after: float = 120.0
    accepted: dict[str, float] = field(default_factory=dict)  # notification id -> when
    payloads: dict[str, bytes] = field(default_factory=dict)
    target_of: dict[str, Target] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    unexpected: list[Answer] = field(default_factory=list)
    refused: list[Answer] = field(default_factory=list)
    _next: int = 0
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Emitter:
        self._headers = {**auth("notifications:emit"), "Content-Type": "application/json"}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=15),
        )
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        return self

    def stop(self) -> None:
        """Start no new notification; those under way still get retried to their 202."""
        self._stopping = True

    async def done(self, timeout: float = 180.0) -> None:  # noqa: ASYNC109 - a deadline
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)
        finally:
            await self._session.close()

    async def abort(self) -> None:
        """Stop at once (teardown of a test that failed half-way)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._session.closed:
            await self._session.close()

    async def _work(self) -> None:
        while not self._stopping and (self.total is None or self._next < self.total):
            n = self._next
            self._next += 1
            target = self.targets[n % len(self.targets)]
            await self._emit_one(target, payload(target.notification_type, n))

    async def _emit_one(self, target: Target, body: bytes) -> None:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + self.give_up_after
        while time.monotonic() < deadline:
            answer = await self._post(target, body, key)
            self.answers.append(answer)
            if answer.status == 202:
                notification_id = json.loads(answer.body)["notificationId"]
                self.accepted.setdefault(notification_id, answer.done_at)
                self.payloads[notification_id] = body
                self.target_of[notification_id] = target
                return
            if answer.status in target.refusals:
                self.refused.append(answer)
                return
            if answer.status not in (None, 503):
                self.unexpected.append(answer)
                return
            await asyncio.sleep(0.1)  # the emitter's own back-off before it tries again
        self.unexpected.append(Answer(time.monotonic(), time.monotonic(), None, error="gave up"))

    async def _post(self, target: Target, body: bytes, key: str) -> Answer:
        url = f"{self.api()}/partners/{target.partner_id}/callbacks/{target.notification_type}/echo"
        headers = {**self._headers, "Idempotency-Key": key}
        sent_at = time.monotonic()
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                return Answer(
                    sent_at, time.monotonic(), response.status, response.content_type, content
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            return Answer(sent_at, time.monotonic(), None, error=type(error).__name__)


def accepted_count(emitter: Emitter) -> Callable[[], Awaitable[int]]:
    """A probe for ``eventually``: how many notifications echo has accepted so far."""

    async def probe() -> int:
        return len(emitter.accepted)

    return probe


def first_receipts(receivers: Iterable[Listening]) -> tuple[dict[str, float], Counter[str]]:
    """When each webhook-id first arrived, and how often each arrived."""
    first: dict[str, float] = {}
    seen: Counter[str] = Counter()
    for receiver in receivers:
        for received in receiver.received:
            webhook_id = received.headers.get("webhook-id", "")
            seen[webhook_id] += 1
            first[webhook_id] = min(first.get(webhook_id, received.at), received.at)
    return first, seen


@dataclass
class Tally:
    name: str
    accepted: int
    delivered: int
    duplicates: int
    lost: list[str]
    recovery_s: float
    extra: str = ""

    def line(self) -> str:
        return (
            f"scenario={self.name} accepted={self.accepted} delivered={self.delivered} "
            f"duplicates={self.duplicates} lost={len(self.lost)} "
            f"recovery_s={self.recovery_s:.1f}{self.extra}"
        )


def tally(
    name: str, emitter: Emitter, receivers: Iterable[Listening], recovery_s: float, extra: str = ""
) -> Tally:
    first, seen = first_receipts(receivers)
    accepted = set(emitter.accepted)
    delivered = accepted & set(first)
    duplicates = sum(seen[i] - 1 for i in delivered)
    lost = sorted(accepted - delivered)
    return Tally(name, len(accepted), len(delivered), duplicates, lost, recovery_s, extra)


async def wait_all_delivered(
    emitter: Emitter,
    receivers: list[Listening],
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline
) -> None:
    """Poll until every accepted notification reached a receiver (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while set(emitter.accepted) - set(first_receipts(receivers)[0]):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def conclude(
    name: str,
    emitter: Emitter,
    receivers: list[Listening],
    faults: Faults,
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline
    extra: str = "",
) -> Tally:
    """Wait for the deliveries and for the database to record how each ended, print the
    summary line either way, and fail naming the lost."""
    await wait_all_delivered(emitter, receivers, timeout)
    if faults.dsn:
        await settled(faults.dsn, emitter.accepted, timeout)
    recovery = await faults.recovery_seconds() if faults.dsn else 0.0
    result = tally(name, emitter, receivers, recovery, extra)
    print(f"\n{result.line()}")
    assert not result.lost, (
        f"{len(result.lost)} accepted notifications never arrived: {result.lost[:5]}"
    )
    return result


@dataclass
class Faults:
    """The faults of a run: when each ended, and what was pending in the database then."""

    dsn: str
    ended: list[tuple[float, list[str]]] = field(default_factory=list)

    async def ended_now(self) -> list[str]:
        """Record that a fault just ended; the pending notifications' ids."""
        at = time.time()
        rows = await delivery_rows(self.dsn)
        pending = [i for i, row in rows.items() if row["status"] in ("queued", "delivering")]
        self.ended.append((at, pending))
        return pending

    async def recovery_seconds(self) -> float:
        """The longest time from a fault's end to the recorded delivery of the last
        notification that was pending then (still undelivered ones count up to now)."""
        rows = await delivery_rows(self.dsn)
        longest = 0.0
        for at, pending in self.ended:
            finished = [rows[i]["delivered_at"] for i in pending if i in rows]
            times = [f.timestamp() if f is not None else time.time() for f in finished]
            longest = max([longest, *(t - at for t in times)])
        return longest


def assert_bodies_intact(emitter: Emitter, receivers: Iterable[Listening]) -> None:
    """Every delivery carried exactly the bytes that were emitted under its webhook-id."""
    for receiver in receivers:
        for received in receiver.received:
            webhook_id = received.headers.get("webhook-id", "")
            if webhook_id in emitter.payloads:
                assert received.body == emitter.payloads[webhook_id], webhook_id


def assert_clean_answers(emitter: Emitter) -> None:
    """Echo never answered anything but 202 or a 503 problem+json to a valid request."""
    assert not emitter.unexpected, [(a.status, a.body[:300], a.error) for a in emitter.unexpected]
    for answer in emitter.answers:
        if answer.status == 503:
            assert_problem_503(answer)


def assert_problem_503(answer: Answer) -> None:
    assert answer.content_type == "application/problem+json", answer
    problem = json.loads(answer.body)
    assert problem["status"] == 503, problem
    assert "Traceback" not in answer.body.decode(errors="replace")


async def delivery_rows(dsn: str, ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The deliveries table as the test sees it: notification id -> row."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT notification_id::text AS id, callback_id, status, attempts, round_attempts,"
            " locked_by, failure_reason, delivered_at FROM deliveries"
            " WHERE $1::uuid[] IS NULL OR notification_id = ANY ($1::uuid[])",
            None if ids is None else [uuid.UUID(i) for i in ids],
        )
    finally:
        await connection.close()
    return {row["id"]: row for row in rows}


async def attempt_logs(dsn: str, ids: Iterable[str]) -> dict[str, list[Any]]:
    """Each notification's recorded attempts, in order."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT notification_id::text AS id, attempt, started_at, duration_ms,"
            " response_status, error FROM delivery_attempts"
            " WHERE notification_id = ANY ($1::uuid[]) ORDER BY notification_id, attempt",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await connection.close()
    logs: dict[str, list[Any]] = {}
    for row in rows:
        logs.setdefault(row["id"], []).append(row)
    return logs


async def settled(
    dsn: str,
    ids: Iterable[str],
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline
) -> None:
    """Wait until none of ``ids`` is queued or leased any more (or the deadline passed)."""
    wanted = list(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await delivery_rows(dsn, wanted)
        if not any(row["status"] in ("queued", "delivering") for row in rows.values()):
            return
        await asyncio.sleep(0.1)


async def assert_all_delivered_in_database(
    dsn: str,
    ids: Iterable[str],
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline
) -> None:
    """The dispatcher recorded every one as delivered: nothing stuck leased or failed."""
    wanted = list(ids)

    async def states() -> Counter[str]:
        rows = await delivery_rows(dsn, wanted)
        return Counter(rows[i]["status"] if i in rows else "missing" for i in wanted)

    await eventually(states, lambda counts: set(counts) <= {"delivered"}, timeout=timeout)


def assert_no_errors_logged(process: Process) -> None:
    """callbackhub logged no error of its own (an unhandled exception is logged at ERROR) and
    no background task died unseen. Warnings, with the driver's tracebacks, are expected while
    the database is away."""
    text = process.log_text()
    errors = [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert not errors, errors[:5]
    assert "Task exception was never retrieved" not in text


# Partners that misbehave below HTTP.

Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Answer with a TCP reset (SO_LINGER 0, then abort)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def trickle(head: bytes, body: bytes = b"") -> Behaviour:
    """Send ``head`` at once, then ``body`` one byte per second (the partner's slowness)."""

    async def behave(writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        for byte in body:
            await asyncio.sleep(1.0)
            writer.write(bytes([byte]))
            await writer.drain()
        await asyncio.Event().wait()  # and then nothing, until the client gives up

    return behave


SLOW_HEAD = trickle(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
SLOW_BODY = trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 100)


@dataclass
class RawPartner:
    """A partner's server on 127.0.0.1 that reads the request, records it like ``Receiver``,
    and then does ``behaviour`` with the connection instead of answering properly."""

    behaviour: Behaviour
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> RawPartner:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            )
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = lines[0].split(" ")[1]
            self.received.append(Received(headers, body, time.monotonic(), path))
            await self.behaviour(writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass  # the client gave up first
        finally:
            self._handlers.discard(task)
            writer.close()
