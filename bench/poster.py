"""P: the ceiling of one aiohttp client process. POSTs the deliveries' payloads, with the same
headers the dispatcher sends, to the bench receiver as fast as it can: ``--concurrency``
requests in flight through one ``ClientSession`` (keep-alive), like the dispatcher's sender.

``python -m bench.poster --url URL --seconds S --out result.json``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

from bench.payloads import notes_body
from service.core.runtime import loop_factory

WARMUP = 1.0


def _headers(body_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "callbackhub-bench/P",
        "notification-type-id": "2",
        "webhook-id": body_id,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + base64.b64encode(uuid.uuid4().bytes * 2).decode(),
        "webhook-sequence": "1",
    }


async def _worker(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], end: float, tally: Counter[str]
) -> None:
    i = 0
    while time.monotonic() < end:
        body = bodies[i % len(bodies)]
        i += 1
        async with session.post(url, data=body, headers=_headers(str(uuid.uuid4()))) as response:
            await response.read()
            tally["ok" if response.status == 200 else "failed"] += 1


async def post_for(url: str, seconds: float, concurrency: int) -> dict[str, object]:
    """Counts the answers of the ``seconds`` after a warm-up second, and this process's CPU."""
    bodies = [notes_body() for _ in range(1000)]
    start = time.monotonic()
    end = start + WARMUP + seconds
    tally: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        workers = [
            asyncio.create_task(_worker(session, url, bodies, end, tally))
            for _ in range(concurrency)
        ]
        await asyncio.sleep(WARMUP)
        ok_before, cpu_before, wall_before = tally["ok"], time.process_time(), time.monotonic()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        ok, cpu = tally["ok"] - ok_before, time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        await asyncio.gather(*workers)
    return {
        "ok": ok,
        "failed": tally["failed"],
        "seconds": wall,
        "rate": ok / wall,
        "concurrency": concurrency,
        "cpu": {"poster": {"cpu_us_per_item": cpu / ok * 1e6 if ok else None, "cores": cpu / wall}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        result = runner.run(post_for(args.url, args.seconds, args.concurrency))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
