"""Load on the echo endpoint: wrk when it is there, else this module's Python generator.

Two ways to load a server:

- ``max``: closed loop, ``concurrency`` connections each sending its next request as soon as
  the last one is answered, for ``seconds``: the highest rate the server sustains.
- ``rate``: open loop at a fixed rate (wrk2-style): request *i* is due at ``start + i / rate``
  whatever happened to the earlier ones, and its latency is measured from that scheduled time,
  so a server that stalls is charged for every request that waited behind the stall
  (no coordinated omission). Plain wrk cannot do this, so this mode is always Python.

``python -m bench.loadgen rate --base URL --partners P1,P2 --token T --rate R --seconds S
--out result.json [--ids-out ids.json]``: with ``--ids-out`` it also writes, for every
accepted notification, the wall-clock time its request was due (for the end-to-end latency).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from bench.payloads import echo_path, notes_body, wrk_script
from service.core.runtime import loop_factory

WARMUP = 1.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def most_in_any_second(times: list[float]) -> int:
    """The largest number of ``times`` (seconds) inside any one-second window."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99, max in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": percentile(ms, 0.50),
        "p90_ms": percentile(ms, 0.90),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": ms[-1] if ms else 0.0,
        "count": len(ms),
    }


@dataclass
class Target:
    """Where and as whom to send echo requests."""

    base: str  # http://127.0.0.1:PORT
    partners: list[str]
    token: str

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.base.removeprefix("http://").partition(":")
        return host, int(port)

    def request(self, i: int) -> bytes:
        """The i-th request (partners in turn), fresh body, as bytes on the wire."""
        body = notes_body()
        head = (
            f"POST {echo_path(self.partners[i % len(self.partners)])} HTTP/1.1\r\n"
            f"Host: {self.base.removeprefix('http://')}\r\n"
            "Content-Type: application/json\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time. Far cheaper per request than
    a full client, so the generator takes little of the CPU the server under test needs. It
    reads only what the echo and the bare handler answer: a status and a Content-Length body."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is a transport without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def send(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class Pool:
    """Keep-alive connections handed out one request at a time."""

    def __init__(self, target: Target, size: int) -> None:
        self.target = target
        self.size = size
        self.idle: asyncio.Queue[_Connection] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await self._connect())

    async def _connect(self) -> _Connection:
        host, port = self.target.address
        _, protocol = await asyncio.get_running_loop().create_connection(_Connection, host, port)
        return protocol

    async def send(self, data: bytes) -> tuple[int, bytes]:
        connection = await self.idle.get()
        try:
            if connection.closed:
                connection = await self._connect()
            return await connection.send(data)
        finally:
            self.idle.put_nowait(connection)

    def close(self) -> None:
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            if connection.transport is not None:
                connection.transport.close()


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # from the scheduled time
    service: list[float] = field(default_factory=list)  # from the actual send
    due_at: dict[str, float] = field(default_factory=dict)  # notificationId -> wall clock


async def _send(pool: Pool, data: bytes, tally: Tally) -> str | None:
    """One echo request; the notificationId when it was accepted."""
    try:
        status, body = await pool.send(data)
    except (OSError, ValueError) as error:
        tally.errors[type(error).__name__] += 1
        return None
    tally.statuses[status] += 1
    return str(json.loads(body)["notificationId"]) if status == 202 else None


async def closed_loop(target: Target, seconds: float, concurrency: int) -> dict[str, object]:
    """``concurrency`` senders back to back for ``seconds``, counted after a warm-up second."""
    tally = Tally()
    pool = Pool(target, concurrency)
    await pool.open()
    requests = itertools.cycle([target.request(i) for i in range(1000)])
    start = time.monotonic()
    window = (start + WARMUP, start + WARMUP + seconds)

    async def sender() -> None:
        while time.monotonic() < window[1]:
            await _send(pool, next(requests), tally)

    tasks = [asyncio.create_task(sender()) for _ in range(concurrency)]
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    accepted_before = tally.statuses[202]
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    accepted = tally.statuses[202] - accepted_before
    await asyncio.gather(*tasks)
    pool.close()
    return {
        "generator": "python",
        "accepted": accepted,
        "seconds": seconds,
        "rate": accepted / seconds,
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "errors": dict(tally.errors),
        "concurrency": concurrency,
    }


async def open_loop(
    target: Target, rate: float, seconds: float, connections: int, keep_ids: bool
) -> dict[str, object]:
    """Request *i* is due at ``start + i / rate``; latency counts from then. The requests are
    built beforehand, so sending one costs the generator as little as possible."""
    tally = Tally()
    total = int(rate * seconds)
    requests = [target.request(i) for i in range(total)]
    pool = Pool(target, connections)
    await pool.open()
    # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
    clock = time.perf_counter

    async def one(data: bytes, due: float, due_wall: float) -> None:
        sent = clock()
        notification_id = await _send(pool, data, tally)
        done = clock()
        if notification_id is not None:
            tally.latencies.append(done - due)
            tally.service.append(done - sent)
            if keep_ids:
                tally.due_at[notification_id] = due_wall

    # A few requests first, so that every connection has been used once when timing starts.
    await asyncio.gather(*(_send(pool, target.request(i), Tally()) for i in range(connections)))
    start, start_wall = clock() + 0.01, time.time() + 0.01
    tasks: list[asyncio.Task[None]] = []
    for i, data in enumerate(requests):
        due = start + i / rate
        delay = due - clock()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(data, due, start_wall + i / rate)))
    last_due = clock()
    await asyncio.gather(*tasks)
    pool.close()
    return {
        "generator": "python-open-loop",
        "rate_target": rate,
        "rate_sent": total / max(1e-9, last_due - start),
        "sent": total,
        "accepted": tally.statuses[202],
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "errors": dict(tally.errors),
        "latency": latency_summary(tally.latencies),
        "service_time": latency_summary(tally.service),
        "cpu_seconds": time.process_time(),
        "ids": tally.due_at if keep_ids else {},
    }


# wrk.

_RESULT = re.compile(r"^BENCH_RESULT (\{.*\})$", re.MULTILINE)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    target: Target, seconds: float, concurrency: int, workdir: Path, threads: int = 1
) -> dict[str, object]:
    """wrk closed loop: ``concurrency`` connections for ``seconds``; requests answered with
    a status >= 400 or not at all are not counted as accepted."""
    script = workdir / "echo.lua"
    script.write_text(wrk_script([uuid.UUID(p) for p in target.partners], target.token))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        target.base,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    match = _RESULT.search(completed.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(match.group(1))
    failed = raw["status_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    duration = raw["duration_us"] / 1e6
    accepted = raw["requests"] - raw["status_errors"]
    return {
        "generator": "wrk",
        "accepted": accepted,
        "seconds": duration,
        "rate": accepted / duration,
        "failed": failed,
        "raw": raw,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("max", "rate"))
    parser.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--partners", required=True, help="comma-separated partner ids")
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ids", action="store_true", help="keep each notificationId's due time")
    args = parser.parse_args()
    target = Target(args.base, args.partners.split(","), args.token)
    # No garbage collection while measuring: a full collection over the tens of thousands of
    # requests and tasks of a run pauses this process for 100-200 ms, and the requests it then
    # sends late would be charged to the server (latency counts from each one's due time).
    # A run is short and keeps what it allocates until the end anyway.
    gc.disable()
    # uvloop: the generator shares the machine with the server under test, so the less CPU it
    # takes per request the less it disturbs what it measures.
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        if args.mode == "max":
            result = runner.run(closed_loop(target, args.seconds, args.concurrency))
        else:
            coroutine = open_loop(target, args.rate, args.seconds, args.connections, args.ids)
            result = runner.run(coroutine)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
