"""``make bench``: measure callbackhub against this machine's own limits, in one run.

Everything runs on 127.0.0.1 against a private embedded PostgreSQL (fsync on) in a temporary
folder. In order:

1. scale: a database with 1,000,000 delivered notifications (generate_series), for later;
2. P: one aiohttp client process POSTing to the receiver the dispatcher uses (on the standard
   asyncio loop; again on uvloop, shown for comparison);
3. delivery: one ``callbackhub dispatcher`` draining a COPY-filled queue of 100,000
   notifications over 100 callbacks: unordered (a subject each), unordered again in the
   million-row database, then ordered (1,000 subjects);
4. H: a bare aiohttp handler under the load generator (wrk, else bench.loadgen), on the
   standard asyncio loop (and on uvloop, shown for comparison);
5. ingest: ``callbackhub serve --no-dispatcher`` at its highest rate under the same generator,
   then its latency at 70% of that rate (open loop, after a VACUUM and CHECKPOINT of what
   the maximum run wrote); again in the million-row database (its latency at the same rate as
   the empty table's), and with ``--workers 2``;
6. end to end: ``serve`` with its dispatcher at a steady 1,000 echoes/s (open loop), from
   each request's due time to the receiver getting the POST;
7. memory: the peak RSS of every process, sampled throughout.

H and ingest, and P and unordered delivery, are measured in turn three times (``repeats``) and
the table shows the median of each, with every sample in ``latest.json``: taking turns lets a
drift of a shared machine hit ceiling and subject alike.

It prints one table and writes ``bench/results/latest.json``. ``BENCH_QUICK=1`` shrinks every
step (about a minute, for development); ``BENCH_GENERATOR=python`` skips wrk;
``BENCH_PROFILE=1`` records py-spy profiles (raw stacks; ``python -m bench.profile FILE`` sums
them up) of serve during ingest and end to end, and of the dispatcher during delivery, into
``bench/results/`` (the figures of such a run are lower: sampling pauses the processes).
Besides the rates, the table gives each figure per CPU-second of the process under test (its
CPU time, from /proc, per item): what it would do with a core of its own, which the other
work on a busy machine disturbs far less than the rates.
``CALLBACKHUB_*`` variables in the environment reach the processes under test (except where
the database, port and data folder are).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import database
from bench.database import Fixture
from bench.loadgen import Target, have_wrk, latency_summary, most_in_any_second, run_wrk
from bench.payloads import NOTES_TYPE
from bench.procs import (
    MemoryWatch,
    Proc,
    free_port,
    listening_workers,
    python,
    tree_cpu_seconds,
    wait_http,
)
from bench.report import Row, table, write_json
from service.api.tokens import mint_token
from service.core.encryption import generate_key, parse_keys
from service.core.settings import Settings

RESULTS = Path(__file__).parent / "results"
JWT_SECRET = "bench-" + uuid.uuid4().hex + uuid.uuid4().hex
ENCRYPTION_KEYS = generate_key("bench")
FORCED = (
    "DATABASE_URL",
    "DATA_DIR",
    "HOST",
    "PORT",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "ENCRYPTION_KEYS",
    "ENCRYPTION_KEYS_FILE",
)
DEFAULTS = {"ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING"}


@dataclass(frozen=True)
class Sizes:
    seconds: float = 10.0  # each maximum-rate measurement
    warmup: float = 2.0
    latency_seconds: float = 10.0  # each fixed-rate measurement
    concurrency: int = 128  # connections of the generator, the same for H and ingest
    poster_concurrency: int = 256
    partners: int = 100
    queue: int = 100_000
    subjects: int = 1_000
    e2e_rate: float = 1_000.0
    e2e_seconds: float = 30.0
    old_rows: int = 1_000_000
    hot_queue: int = 30_000  # the noisy neighbour's backlog
    noisy_seconds: float = 15.0  # how long the 20 quiet callbacks receive 40/s
    paced_seconds: float = 10.0  # of the maxPerSecond 200 run
    repeats: int = 3  # ceiling and subject in turn, median of each: H/ingest and P/delivery


QUICK = Sizes(
    seconds=3.0,
    warmup=1.0,
    latency_seconds=3.0,
    queue=10_000,
    subjects=100,
    e2e_seconds=5.0,
    old_rows=100_000,
    hot_queue=10_000,
    noisy_seconds=5.0,
    paced_seconds=3.0,
    repeats=1,
)


def median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample with the median rate, with every sample's rate kept beside it: steadier than
    one run on a shared machine, and still comparable with the figures measured once (ordered
    delivery, the million-row database) that are set against it."""
    ranked = sorted(samples, key=lambda sample: float(sample["rate"]))
    chosen = dict(ranked[len(ranked) // 2])
    chosen["samples"] = [round(float(sample["rate"]), 1) for sample in samples]
    return chosen


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def wait_listening(proc: Proc, port: int, workers: int) -> None:
    """Until every ``serve --workers`` process listens on the port (within a deadline)."""
    deadline = time.monotonic() + 60
    while listening_workers(proc, port) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: {workers} workers not listening:\n{proc.log_tail()}")
        await asyncio.sleep(0.1)


def ensure_py_spy() -> None:
    if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        log("installing py-spy into the virtualenv for BENCH_PROFILE=1")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)


def print_logs(workdir: Path) -> None:
    log(f"failed; the last lines of each process's log ({workdir}):")
    for log_file in sorted(workdir.glob("*.log")):
        lines = log_file.read_text(errors="replace").splitlines()[-20:]
        print(f"=== {log_file.name}\n" + "\n".join(lines), file=sys.stderr)


def ensure_wrk() -> bool:
    """wrk on PATH, installing it with apt-get when we are root; never fails the bench."""
    if os.environ.get("BENCH_GENERATOR") == "python":
        return False
    if have_wrk():
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    log("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            subprocess.run(command, env=env, capture_output=True, timeout=300, check=True)
        except (OSError, subprocess.SubprocessError) as error:
            log(f"could not install wrk ({type(error).__name__}); using the Python generator")
            return False
    return have_wrk()


class CpuMeter:
    """CPU seconds that some processes (and PostgreSQL, all backends) use during a window."""

    def __init__(self, procs: dict[str, Proc], postgres_pid: int) -> None:
        self._probes = {name: proc.cpu_seconds for name, proc in procs.items()}
        self._probes["postgres"] = lambda: tree_cpu_seconds(postgres_pid)
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def __enter__(self) -> CpuMeter:
        self._before = {name: probe() for name, probe in self._probes.items()}
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._started
        self.used = {name: probe() - self._before[name] for name, probe in self._probes.items()}

    def per_item(self, count: int) -> dict[str, Any]:
        """Microseconds of CPU per item, and cores busy on average, by process."""
        return {
            name: {
                "cpu_us_per_item": used / count * 1e6 if count else None,
                "cores": used / self.wall if self.wall else None,
            }
            for name, used in self.used.items()
        }


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path, profile: bool) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.profile = profile
        self.watch = MemoryWatch()
        self.details: dict[str, Any] = {"sizes": sizes.__dict__}
        self.use_wrk = False
        self.server_dsn = ""
        self.postgres_pid = 0
        self.receiver_url = ""
        self.receiver_port = 0
        self.otlp_port = 0
        self.fixture: Fixture | None = None
        self.keyring = parse_keys(ENCRYPTION_KEYS, "the bench's key")
        settings = Settings(jwt_secret=JWT_SECRET)
        # Internal emitters hold a token for the scope, not bound to one partner.
        self.token = mint_token(settings, ["notifications:emit"], None, 3 * 3600, "bench")

    # Set-up.

    async def setup(self) -> None:
        self.use_wrk = await asyncio.to_thread(ensure_wrk)
        self.details["generator"] = "wrk" if self.use_wrk else "python"
        log(f"load generator: {self.details['generator']}")
        folder = Path("/tmp") / f"cbh-bench-{uuid.uuid4().hex[:8]}"  # short: socket path
        self.server_dsn, self.postgres_pid = await asyncio.to_thread(database.start_server, folder)
        self.receiver_port = free_port()
        argv = python("bench.receiver", "--port", str(self.receiver_port))
        self.receiver = self.spawn("receiver", "receiver", argv)
        self.receiver_url = f"{self.receiver_base}/hook"
        await wait_http(self.receiver, f"{self.receiver_base}/control/stats")
        self.otlp_port = free_port()
        sink = python("bench.otlp_sink", "--port", str(self.otlp_port))
        self.otlp_sink = self.spawn("OTLP sink", "otlp-sink", sink)
        await wait_http(self.otlp_sink, f"http://127.0.0.1:{self.otlp_port}/control/stats")
        self.fixture = await database.create_template(
            self.server_dsn, self.receiver_url, self.sizes.partners, self.keyring
        )

    @property
    def receiver_base(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def spawn(
        self, name: str, role: str, argv: list[str], env: dict[str, str] | None = None
    ) -> Proc:
        """Start a process whose memory is watched; its output goes to ``<role>.log``."""
        proc = Proc(name, role, argv, self.workdir / f"{role}.log", env)
        return self.watch.add(proc.start())

    def callbackhub_env(
        self, dsn: str, port: int | None = None, traced: bool = False
    ) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("CALLBACKHUB_") and k.removeprefix("CALLBACKHUB_") in FORCED)
        }
        for name, value in DEFAULTS.items():
            env.setdefault(f"CALLBACKHUB_{name}", value)
        env["CALLBACKHUB_DATABASE_URL"] = dsn
        env["CALLBACKHUB_DATA_DIR"] = str(self.workdir / "data")
        env["CALLBACKHUB_JWT_SECRET"] = JWT_SECRET
        env["CALLBACKHUB_ENCRYPTION_KEYS"] = ENCRYPTION_KEYS
        env["CALLBACKHUB_HOST"] = "127.0.0.1"
        if port is not None:
            env["CALLBACKHUB_PORT"] = str(port)
        for name in [k for k in env if k.startswith("OTEL_")]:
            del env[name]  # tracing is on only where a step asks for it
        if traced:  # every request and attempt sampled, exported to the local sink
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{self.otlp_port}"
            env["OTEL_TRACES_SAMPLER"] = "always_on"
        return env

    def target(self, port: int) -> Target:
        assert self.fixture is not None
        return Target(
            f"http://127.0.0.1:{port}", [str(p) for p in self.fixture.partners], self.token
        )

    # Generators.

    async def max_rate(self, target: Target, seconds: float) -> dict[str, Any]:
        """The closed-loop rate: wrk, or the Python generator in its own process."""
        if self.use_wrk:
            return await asyncio.to_thread(
                run_wrk, target, seconds, self.sizes.concurrency, self.workdir
            )
        return await self.loadgen(
            "max", target, "--seconds", str(seconds), "--concurrency", str(self.sizes.concurrency)
        )

    async def fixed_rate(
        self, target: Target, rate: float, seconds: float, ids: bool = False
    ) -> dict[str, Any]:
        extra = ["--rate", f"{rate:.1f}", "--seconds", str(seconds)] + (["--ids"] if ids else [])
        return await self.loadgen("rate", target, *extra)

    async def loadgen(self, mode: str, target: Target, *extra: str) -> dict[str, Any]:
        out = self.workdir / f"loadgen-{uuid.uuid4().hex[:6]}.json"
        argv = python(
            "bench.loadgen",
            mode,
            "--base",
            target.base,
            "--partners",
            ",".join(target.partners),
            "--token",
            target.token,
            "--out",
            str(out),
            *extra,
        )
        proc = self.spawn(f"loadgen {mode}", "loadgen", argv)
        code = await proc.wait(timeout=600)
        if code != 0:
            raise RuntimeError(f"loadgen failed ({code}):\n{proc.log_tail()}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    # Profiles.

    @contextlib.asynccontextmanager
    async def profiled(self, proc: Proc, name: str) -> Any:
        """py-spy on ``proc`` (and its children) while the body runs (with BENCH_PROFILE=1)."""
        spy = None
        if self.profile:
            out = RESULTS / f"profile-{name}.txt"
            argv = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(proc.pid),
                "--subprocesses",
                "--format",
                "raw",
                "--output",
                str(out),
            ]
            spy = Proc(f"py-spy {name}", "profiler", argv, self.workdir / "py-spy.log").start()
        try:
            yield
        finally:
            if spy is not None and spy.running():
                os.kill(spy.pid, signal.SIGINT)  # py-spy writes its output and exits
                with contextlib.suppress(TimeoutError):
                    await spy.wait(timeout=30)

    # Receiver.

    async def otlp_stats(self) -> Any:
        """What the sink received: proof the traced steps exported their spans."""
        url = f"http://127.0.0.1:{self.otlp_port}/control/stats"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            stats = await response.json()
        log(f"  OTLP sink: {stats['exports']:,} exports, {stats['bytes'] / 1e6:.1f} MB")
        return stats

    async def receiver_call(self, method: str, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.receiver_base + path) as response,
        ):
            return await response.json()

    async def wait_received(self, count: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The receiver's stats once it has ``count`` distinct notifications (or the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            stats: dict[str, Any] = await self.receiver_call("GET", "/control/stats")
            if stats["unique"] >= count or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.25)

    # The steps.

    async def start_bare(self, loop: str) -> tuple[Proc, int]:
        port = free_port()
        argv = python("bench.bare", "--port", str(port), "--loop", loop)
        proc = self.spawn(f"bare handler (H, {loop})", "bare", argv)
        await wait_http(proc, f"http://127.0.0.1:{port}/health/ready")
        return proc, port

    async def measure_h(self, proc: Proc, port: int) -> dict[str, Any]:
        await self.max_rate(self.target(port), self.sizes.warmup)
        with CpuMeter({"bare": proc}, self.postgres_pid) as cpu:
            result = await self.max_rate(self.target(port), self.sizes.seconds)
        result["cpu"] = cpu.per_item(result["accepted"])
        log(f"  H = {result['rate']:,.0f} req/s")
        return result

    async def step_h(self, loop: str = "uvloop") -> dict[str, Any]:
        log(f"H: bare aiohttp handler ({loop} loop)")
        proc, port = await self.start_bare(loop)
        result = await self.measure_h(proc, port)
        await proc.stop()
        return result

    async def step_h_and_ingest(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """H and ingest measured in turn ``repeats`` times, both processes started once; the
        median of each, then ingest's latency at 70% of its median."""
        log("H and ingest (empty), in turn")
        bare, bare_port = await self.start_bare("uvloop")
        dsn = await database.create_database(self.server_dsn, "bench_ingest_empty")
        serve, serve_port = await self.start_serve("empty", dsn)
        h_samples, ingest_samples = [], []
        for _ in range(self.sizes.repeats):
            h_samples.append(await self.measure_h(bare, bare_port))
            ingest_samples.append(await self.measure_ingest_max("empty", serve, serve_port, dsn))
        await bare.stop()
        h, maximum = median_of(h_samples), median_of(ingest_samples)
        await database.settle_database(dsn)
        steady = await self.measure_latency(serve_port, 0.7 * maximum["rate"])
        await serve.stop()
        await database.drop_database(self.server_dsn, "bench_ingest_empty")
        return h, {"max": maximum, "at_70_percent": steady}

    async def step_p(self, loop: str = "uvloop") -> dict[str, Any]:
        log(f"P: one aiohttp client process POSTing to the receiver ({loop} loop)")
        await self.receiver_call("POST", "/control/reset")
        out = self.workdir / "poster.json"
        argv = python(
            "bench.poster",
            "--url",
            f"{self.receiver_url}/p",
            "--seconds",
            str(self.sizes.seconds),
            "--concurrency",
            str(self.sizes.poster_concurrency),
            "--out",
            str(out),
            "--loop",
            loop,
        )
        proc = self.spawn(f"poster (P, {loop})", "poster", argv)
        with CpuMeter({"receiver": self.receiver}, self.postgres_pid) as cpu:
            if await proc.wait(timeout=300) != 0:
                raise RuntimeError(f"poster failed:\n{proc.log_tail()}")
        result: dict[str, Any] = json.loads(out.read_text())
        result["cpu"]["receiver"] = cpu.per_item(result["ok"])["receiver"]
        await self.receiver_call("POST", "/control/reset")
        log(f"P = {result['rate']:,.0f} req/s")
        return result

    async def start_serve(
        self, name: str, dsn: str, workers: int = 1, traced: bool = False
    ) -> tuple[Proc, int]:
        port = free_port()
        args = ["serve", "--no-dispatcher"] + (["--workers", str(workers)] if workers > 1 else [])
        env = self.callbackhub_env(dsn, port, traced)
        proc = self.spawn(f"serve ({name})", "serve", python("service", *args), env)
        await wait_http(proc, f"http://127.0.0.1:{port}/health/ready")
        await wait_listening(proc, port, workers)
        return proc, port

    async def measure_ingest_max(
        self, name: str, proc: Proc, port: int, dsn: str
    ) -> dict[str, Any]:
        target = self.target(port)
        await self.max_rate(target, self.sizes.warmup)
        since = await database.database_now(dsn)
        with CpuMeter({"serve": proc}, self.postgres_pid) as cpu:
            async with self.profiled(proc, f"ingest-{name}"):
                maximum = await self.max_rate(target, self.sizes.seconds)
        maximum["cpu"] = cpu.per_item(maximum["accepted"])
        maximum["group_commit"] = await database.commit_stats(dsn, since)
        log(f"  ingest max {maximum['rate']:,.0f}/s")
        return maximum

    async def measure_latency(self, port: int, rate: float) -> dict[str, Any]:
        log(f"  open loop at {rate:,.0f}/s")
        steady = await self.fixed_rate(self.target(port), rate, self.sizes.latency_seconds)
        latency = steady["latency"]
        log(f"  p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms")
        return steady

    async def step_ingest(
        self,
        name: str,
        dsn: str,
        workers: int = 1,
        latency_rate: float | None = None,
        traced: bool = False,
    ) -> dict[str, Any]:
        """The highest rate, then the latency at ``latency_rate`` (default: 70% of that)."""
        log(
            f"ingest ({name}): serve --no-dispatcher"
            + (f" --workers {workers}" if workers > 1 else "")
        )
        proc, port = await self.start_serve(name, dsn, workers, traced)
        maximum = await self.measure_ingest_max(name, proc, port, dsn)
        await database.settle_database(dsn)
        steady = await self.measure_latency(port, latency_rate or 0.7 * maximum["rate"])
        await proc.stop()
        return {"max": maximum, "at_70_percent": steady}

    async def step_delivery(
        self,
        name: str,
        dsn: str,
        queue: database.Queue,
        traced: bool = False,
        dispatchers: int = 1,
    ) -> dict[str, Any]:
        count = len(queue.deliveries)
        log(f"delivery ({name}): {count:,} notifications")
        await database.fill_queue(dsn, queue)
        await self.receiver_call("POST", "/control/reset")
        env = self.callbackhub_env(dsn, traced=traced)
        argv = python("service", "dispatcher")
        roles = ["dispatcher"] + [f"dispatcher-{n}" for n in range(2, dispatchers + 1)]
        procs = {role: self.spawn(f"{role} ({name})", role, argv, env) for role in roles}
        await self.wait_received(1, timeout=60)  # started: measure from here
        meter = CpuMeter({**procs, "receiver": self.receiver}, self.postgres_pid)
        with meter:
            async with self.profiled(procs["dispatcher"], f"delivery-{name}"):
                stats = await self.wait_received(count, timeout=60 + count / 500)
        delivered, pending = await self.wait_recorded(dsn)
        for proc in procs.values():
            await proc.stop()
        elapsed = stats["last"] - stats["first"]
        rate = (stats["unique"] - 1) / elapsed if elapsed > 0 else 0.0
        log(f"  {stats['unique']:,} received, {rate:,.0f}/s; {pending:,} not recorded as delivered")
        return {
            "rate": rate,
            "received": stats,
            "recorded_delivered": delivered,
            "still_pending": pending,
            "complete": stats["unique"] >= count and pending == 0,
            "cpu": meter.per_item(stats["unique"]),
        }

    async def wait_recorded(self, dsn: str) -> tuple[int, int]:
        """(delivered, pending) once the dispatcher has recorded every outcome (or after 30 s)."""
        deadline = time.monotonic() + 30
        while True:
            delivered, pending = await database.delivered_count(dsn)
            if pending == 0 or time.monotonic() > deadline:
                return delivered, pending
            await asyncio.sleep(0.25)

    async def step_e2e(self, dsn: str) -> dict[str, Any]:
        rate, seconds = self.sizes.e2e_rate, self.sizes.e2e_seconds
        log(f"end to end: serve with dispatcher, {rate:,.0f}/s for {seconds:.0f} s")
        await self.receiver_call("POST", "/control/reset?record=1")
        port = free_port()
        env = self.callbackhub_env(dsn, port)
        proc = self.spawn("serve (e2e, with dispatcher)", "serve", python("service", "serve"), env)
        await wait_http(proc, f"http://127.0.0.1:{port}/health/ready")
        with CpuMeter({"serve": proc, "receiver": self.receiver}, self.postgres_pid) as cpu:
            async with self.profiled(proc, "e2e"):
                sent = await self.fixed_rate(self.target(port), rate, seconds, ids=True)
        due_at: dict[str, float] = sent.pop("ids")
        stats = await self.wait_received(len(due_at), timeout=30)
        arrivals: dict[str, float] = await self.receiver_call("GET", "/control/arrivals")
        await proc.stop()
        lags = [arrivals[i] - due for i, due in due_at.items() if i in arrivals]
        summary = latency_summary(lags)
        log(f"  p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms")
        return {
            "latency": summary,
            "accepted": len(due_at),
            "received": stats["unique"],
            "missing": len(due_at) - len(lags),
            "echo": sent,
            "cpu": cpu.per_item(len(due_at)),
        }

    async def run(self) -> tuple[list[Row], dict[str, Any]]:
        """Each ceiling right before what is measured against it, and the million-row figures
        right after their empty-table twins: a busy machine drifts less in between."""
        results: dict[str, Any] = self.details
        scale = await self.scale_database()
        p_samples, delivery_samples = [], []
        for _ in range(self.sizes.repeats):  # in turn: a drifting machine drifts for both
            p_samples.append(await self.step_p())
            delivery_samples.append(await self.delivery_step("unordered", ordered=False))
        results["P"], results["delivery"] = median_of(p_samples), median_of(delivery_samples)
        results["P_asyncio"] = await self.step_p("asyncio")
        results["scale"] = {"delivery": await self.delivery_step("scale", False, scale)}
        results["delivery_ordered"] = await self.delivery_step("ordered", ordered=True)
        # Scaling out: the same queue drained by two dispatcher processes sharing the database.
        results["delivery_two"] = await self.delivery_step("two", False, dispatchers=2)
        # One busy partner: everything to one callback, at the default limit and at 64.
        results["one_callback"] = await self.one_callback_step("one-callback")
        results["one_callback_64"] = await self.one_callback_step("one-callback-64", 64)
        results["noisy_neighbour"] = await self.step_noisy_neighbour()
        results["paced"] = await self.step_paced()
        results["H"], results["ingest"] = await self.step_h_and_ingest()
        results["H_asyncio"] = await self.step_h("asyncio")
        # The same offered load as the empty table's latency run: only the table size differs.
        empty_rate = results["ingest"]["at_70_percent"]["rate_target"]
        results["scale"]["ingest"] = await self.step_ingest("scale", scale, latency_rate=empty_rate)
        results["scale"]["rows_after"] = await database.table_rows(scale)
        await database.drop_database(self.server_dsn, "bench_scale")
        results["ingest_workers_2"] = await self.ingest_step("workers-2", workers=2)
        # Tracing on, every request and attempt sampled and exported (off is the rows above).
        results["ingest_traced"] = await self.ingest_step("traced", traced=True)
        results["delivery_traced"] = await self.delivery_step("traced", False, traced=True)
        results["otlp_sink"] = await self.otlp_stats()
        # Two custom headers and an OAuth2 token on every callback (plain is "delivery").
        results["delivery_options"] = await self.delivery_step("options", False, options=True)
        dsn = await database.create_database(self.server_dsn, "bench_e2e")
        results["e2e"] = await self.step_e2e(dsn)
        await database.drop_database(self.server_dsn, "bench_e2e")
        await self.watch.stop()
        results["memory"] = self.watch.peaks
        return self.rows(results), results

    async def scale_database(self) -> str:
        """A database with ``old_rows`` delivered notifications (made first, measured later)."""
        log(f"scale: a database with {self.sizes.old_rows:,} delivered notifications")
        dsn = await database.create_database(self.server_dsn, "bench_scale")
        started = time.monotonic()
        await database.add_old_rows(dsn, self.sizes.old_rows)
        self.details["scale_fill_seconds"] = time.monotonic() - started
        log(f"  added in {self.details['scale_fill_seconds']:.0f} s")
        return dsn

    async def delivery_step(
        self,
        name: str,
        ordered: bool,
        dsn: str = "",
        traced: bool = False,
        options: bool = False,
        dispatchers: int = 1,
    ) -> dict[str, Any]:
        """A queue of ``queue`` notifications drained by ``dispatchers`` dispatcher processes;
        a fresh database unless ``dsn`` is given; with ``options``, every callback has custom
        headers and OAuth2."""
        assert self.fixture is not None
        sizes, fresh = self.sizes, not dsn
        if ordered:
            build = functools.partial(
                database.ordered_queue, self.fixture, sizes.queue, sizes.subjects
            )
        else:
            build = functools.partial(database.unordered_queue, self.fixture, sizes.queue)
        queue = await asyncio.to_thread(build)
        dsn = dsn or await database.create_database(self.server_dsn, f"bench_{name}")
        if options:
            token_url = f"{self.receiver_base}/oauth/token"
            await database.add_delivery_options(dsn, token_url, self.keyring)
        result = await self.step_delivery(name, dsn, queue, traced, dispatchers)
        if options:
            result["tokens"] = (await self.receiver_call("GET", "/control/stats"))["tokens"]
        if fresh:
            await database.drop_database(self.server_dsn, f"bench_{name}")
        return result

    async def one_callback_step(
        self, name: str, max_in_flight: int | None = None
    ) -> dict[str, Any]:
        """A queue of ``queue`` notifications all for one callback, drained by one dispatcher."""
        assert self.fixture is not None
        queue = await asyncio.to_thread(database.one_callback_queue, self.fixture, self.sizes.queue)
        dsn = await database.create_database(self.server_dsn, "bench_one_callback")
        callback = self.fixture.callbacks[NOTES_TYPE][0]
        await database.set_limits(dsn, callback, max_in_flight, None)
        result = await self.step_delivery(name, dsn, queue)
        await database.drop_database(self.server_dsn, "bench_one_callback")
        return result

    async def step_noisy_neighbour(self) -> dict[str, Any]:
        """One callback drains a backlog while 20 others receive a trickle through the API:
        the trickle's end-to-end latency while the backlog drains, and the backlog's rate."""
        assert self.fixture is not None
        sizes = self.sizes
        log(f"noisy neighbour: {sizes.hot_queue:,} queued for one callback, 20 others at 40/s")
        hot = await asyncio.to_thread(database.one_callback_queue, self.fixture, sizes.hot_queue)
        dsn = await database.create_database(self.server_dsn, "bench_noisy")
        await database.fill_queue(dsn, hot)
        await self.receiver_call("POST", "/control/reset?record=1")
        port = free_port()
        env = self.callbackhub_env(dsn, port)
        proc = self.spawn("serve (noisy neighbour)", "serve", python("service", "serve"), env)
        await wait_http(proc, f"http://127.0.0.1:{port}/health/ready")
        quiet_partners = [str(p) for p in self.fixture.partners[1:21]]
        quiet = Target(f"http://127.0.0.1:{port}", quiet_partners, self.token)
        async with self.profiled(proc, "noisy-neighbour"):
            sent = await self.fixed_rate(quiet, 40.0, sizes.noisy_seconds, ids=True)
            due_at: dict[str, float] = sent.pop("ids")
            await self.wait_received(len(hot.deliveries) + len(due_at), timeout=60)
        arrivals: dict[str, float] = await self.receiver_call("GET", "/control/arrivals")
        await proc.stop()
        await database.drop_database(self.server_dsn, "bench_noisy")
        hot_times = [arrivals[str(n[0])] for n in hot.notifications if str(n[0]) in arrivals]
        first, last = min(hot_times), max(hot_times)
        lags = {i: arrivals[i] - due for i, due in due_at.items() if i in arrivals}
        during = [lag for i, lag in lags.items() if first <= due_at[i] <= last]
        summary = latency_summary(during) if during else None
        rate = (len(hot_times) - 1) / (last - first) if last > first else 0.0
        log(f"  hot {rate:,.0f}/s; quiet during the drain: {len(during)}, {summary}")
        return {
            "hot_rate": rate,
            "hot_received": len(hot_times),
            "quiet_during": summary,
            "quiet_sent_during": len(during),
            "quiet_all": latency_summary(list(lags.values())),
            "quiet_missing": len(due_at) - len(lags),
        }

    async def step_paced(self) -> dict[str, Any]:
        """maxPerSecond 200 on one callback, two dispatcher processes: the most requests the
        receiver saw in any one-second window."""
        assert self.fixture is not None
        count = int(200 * self.sizes.paced_seconds)
        log(f"maxPerSecond 200, two dispatchers: {count:,} notifications")
        queue = await asyncio.to_thread(database.one_callback_queue, self.fixture, count)
        dsn = await database.create_database(self.server_dsn, "bench_paced")
        await database.set_limits(dsn, self.fixture.callbacks[NOTES_TYPE][0], None, 200.0)
        await database.fill_queue(dsn, queue)
        await self.receiver_call("POST", "/control/reset?record=1")
        env = self.callbackhub_env(dsn)
        argv = python("service", "dispatcher")
        procs = [self.spawn(f"dispatcher {n}", f"dispatcher-{n}", argv, env) for n in (1, 2)]
        stats = await self.wait_received(count, timeout=count / 200 + 60)
        arrivals: dict[str, float] = await self.receiver_call("GET", "/control/arrivals")
        for proc in procs:
            await proc.stop()
        await database.drop_database(self.server_dsn, "bench_paced")
        most = most_in_any_second(list(arrivals.values()))
        elapsed = stats["last"] - stats["first"]
        log(f"  most in any second: {most}; {stats['unique']:,} in {elapsed:.1f} s")
        return {"most_in_any_second": most, "received": stats["unique"], "seconds": elapsed}

    async def ingest_step(
        self, name: str, workers: int = 1, traced: bool = False
    ) -> dict[str, Any]:
        dsn = await database.create_database(self.server_dsn, f"bench_ingest_{name}")
        result = await self.step_ingest(name, dsn, workers, traced=traced)
        await database.drop_database(self.server_dsn, f"bench_ingest_{name}")
        return result

    def rows(self, r: dict[str, Any]) -> list[Row]:
        return [
            *self.rate_rows(r),
            *self.busy_partner_rows(r),
            *self.latency_rows(r),
            *self.cpu_rows(r),
            *self.memory_rows(),
        ]

    def rate_rows(self, r: dict[str, Any]) -> list[Row]:
        h, p = r["H"]["rate"], r["P"]["rate"]
        ingest, unordered = r["ingest"]["max"]["rate"], r["delivery"]["rate"]
        scale, old = r["scale"], f"{self.sizes.old_rows:,} old rows"
        return [
            Row("H: bare aiohttp handler (uvloop)", h, "req/s"),
            Row("H on asyncio (for comparison)", r["H_asyncio"]["rate"], "req/s", h, "H"),
            Row("P: one aiohttp client -> receiver (uvloop)", p, "req/s"),
            Row("P on asyncio (for comparison)", r["P_asyncio"]["rate"], "req/s", p, "P"),
            Row("ingest, 1 serve process", ingest, "/s", h, "H", at_least=0.5),
            Row("ingest, serve --workers 2", r["ingest_workers_2"]["max"]["rate"], "/s", h, "H"),
            Row("delivery, unordered", unordered, "/s", p, "P", at_least=0.7),
            Row(
                f"delivery, ordered ({self.sizes.subjects:,} subjects)",
                r["delivery_ordered"]["rate"],
                "/s",
                unordered,
                "unordered",
                at_least=0.8,
            ),
            Row(
                "delivery, unordered, 2 dispatcher processes",
                r["delivery_two"]["rate"],
                "/s",
                p,
                "P",
            ),
            Row(
                "ingest, tracing on (all sampled)",
                r["ingest_traced"]["max"]["rate"],
                "/s",
                ingest,
                "off",
            ),
            Row(
                "delivery, tracing on (all sampled)",
                r["delivery_traced"]["rate"],
                "/s",
                unordered,
                "off",
            ),
            Row(
                "delivery, custom headers + OAuth2",
                r["delivery_options"]["rate"],
                "/s",
                unordered,
                "plain",
                at_least=0.9,
            ),
            Row(
                f"ingest, {old}",
                scale["ingest"]["max"]["rate"],
                "/s",
                ingest,
                "empty",
                at_least=0.9,
            ),
            Row(
                f"delivery, {old}",
                scale["delivery"]["rate"],
                "/s",
                unordered,
                "empty",
                at_least=0.9,
            ),
        ]

    def busy_partner_rows(self, r: dict[str, Any]) -> list[Row]:
        p, alone = r["P"]["rate"], r["one_callback"]["rate"]
        noisy, quiet = r["noisy_neighbour"], r["noisy_neighbour"]["quiet_during"] or {}
        during = "quiet callbacks while one drains"
        return [
            Row("delivery, one callback, maxInFlight 8", alone, "/s", p, "P", at_least=0.5),
            Row(
                "delivery, one callback, maxInFlight 64",
                r["one_callback_64"]["rate"],
                "/s",
                p,
                "P",
                at_least=0.7,
            ),
            Row(f"noisy neighbour: {during}, p50", quiet.get("p50_ms"), "ms", at_most=15),
            Row(f"noisy neighbour: {during}, p99", quiet.get("p99_ms"), "ms", at_most=50),
            Row(f"noisy neighbour: {during}, max", quiet.get("max_ms"), "ms"),
            Row(
                "noisy neighbour: the draining callback's rate",
                noisy["hot_rate"],
                "/s",
                alone,
                "alone",
                at_least=0.8,
            ),
            Row(
                "maxPerSecond 200, 2 dispatchers: most in any 1 s",
                r["paced"]["most_in_any_second"],
                "req",
                at_most=201,
            ),
        ]

    def latency_rows(self, r: dict[str, Any]) -> list[Row]:
        def at_70(step: dict[str, Any], quantile: str) -> float:
            return float(step["at_70_percent"]["latency"][quantile])

        e2e, rate = r["e2e"]["latency"], f"{self.sizes.e2e_rate:,.0f}/s"
        return [
            Row("ingest p50 at 70% of its max", at_70(r["ingest"], "p50_ms"), "ms"),
            Row("ingest p99 at 70% of its max", at_70(r["ingest"], "p99_ms"), "ms", at_most=50),
            Row("ingest --workers 2 p99 at 70%", at_70(r["ingest_workers_2"], "p99_ms"), "ms"),
            Row(
                f"ingest p99, {self.sizes.old_rows:,} old rows, same load as empty",
                at_70(r["scale"]["ingest"], "p99_ms"),
                "ms",
                at_most=50,
            ),
            Row(f"end to end p50 at {rate}", e2e["p50_ms"], "ms", at_most=15),
            Row(f"end to end p99 at {rate}", e2e["p99_ms"], "ms", at_most=100),
            Row(f"end to end max at {rate}", e2e["max_ms"], "ms"),
        ]

    def cpu_rows(self, r: dict[str, Any]) -> list[Row]:
        """The same comparisons per CPU-second of the process under test: what each would do
        with a core of its own, which a busy machine disturbs far less than the rates."""

        def per_core(step: dict[str, Any], process: str) -> float | None:
            cost = step.get("cpu", {}).get(process, {}).get("cpu_us_per_item")
            return 1e6 / cost if cost else None

        h, p = per_core(r["H"], "bare"), per_core(r["P"], "poster")
        ingest = per_core(r["ingest"]["max"], "serve")
        unordered = per_core(r["delivery"], "dispatcher")
        unit = "/CPU-s"
        return [
            Row("per CPU-s: H, bare handler", h, unit),
            Row("per CPU-s: ingest, serve", ingest, unit, h, "H"),
            Row("per CPU-s: ingest, PostgreSQL", per_core(r["ingest"]["max"], "postgres"), unit),
            Row("per CPU-s: P, client", p, unit),
            Row("per CPU-s: delivery, dispatcher", unordered, unit, p, "P"),
            Row(
                "per CPU-s: ordered, dispatcher",
                per_core(r["delivery_ordered"], "dispatcher"),
                unit,
                unordered,
                "unordered",
            ),
            Row(
                "per CPU-s: ingest, serve, old rows",
                per_core(r["scale"]["ingest"]["max"], "serve"),
                unit,
                ingest,
                "empty",
            ),
            Row(
                "per CPU-s: delivery, dispatcher, old rows",
                per_core(r["scale"]["delivery"], "dispatcher"),
                unit,
                unordered,
                "empty",
            ),
        ]

    def memory_rows(self) -> list[Row]:
        rows = [Row("peak RSS, any serve process", self.watch.peak_of("serve"), "MB", at_most=300)]
        for role in ("dispatcher", "receiver", "bare", "poster", "loadgen"):
            rows.append(Row(f"peak RSS, {role}", self.watch.peak_of(role), "MB"))
        return rows

    async def close(self) -> None:
        for proc in self.watch._procs:
            await proc.stop(timeout=10)


def _incomplete(results: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("delivery", "delivery_ordered", "one_callback", "one_callback_64"):
        if not results[key]["complete"]:
            problems.append(f"{key}: not every notification was delivered and recorded")
    if not results["scale"]["delivery"]["complete"]:
        problems.append("scale delivery: not every notification was delivered and recorded")
    if results["noisy_neighbour"]["quiet_missing"]:
        problems.append("noisy neighbour: accepted notifications never arrived")
    if results["e2e"]["missing"]:
        problems.append(f"e2e: {results['e2e']['missing']} accepted notifications never arrived")
    for name, step in (("H", results["H"]), ("ingest", results["ingest"]["max"])):
        if step.get("failed"):
            problems.append(f"{name}: {step['failed']} requests failed under the maximum load")
    failures: Counter[str] = Counter()
    for step in (results["ingest"], results["ingest_workers_2"], results["scale"]["ingest"]):
        for status, n in step["at_70_percent"]["statuses"].items():
            if status != "202":
                failures[status] += n
    if failures:
        problems.append(f"ingest at 70%: non-202 answers {dict(failures)}")
    return problems


async def main_async(quick: bool, profile: bool) -> int:
    sizes = QUICK if quick else Sizes()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cbh-bench-") as workdir:
        bench = Bench(sizes, Path(workdir), profile)
        bench.watch.start()
        try:
            await bench.setup()
            rows, results = await bench.run()
        except BaseException:
            print_logs(Path(workdir))
            raise
        finally:
            await bench.close()
    results["total_seconds"] = time.monotonic() - started
    results["quick"] = quick
    results["profiled"] = profile
    results["problems"] = _incomplete(results)
    write_json(RESULTS / "latest.json", rows, results)
    mode = " (BENCH_QUICK: reduced sizes)" if quick else ""
    print(
        f"\ncallbackhub bench{mode}, generator {results['generator']}, "
        f"{results['total_seconds']:.0f} s; H, ingest, P and delivery: median of "
        f"{sizes.repeats} taken in turn\n"
    )
    print(table(rows))
    for problem in results["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"\nwritten to {RESULTS / 'latest.json'}")
    return 1 if results["problems"] else 0


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    profile = os.environ.get("BENCH_PROFILE") == "1"
    if profile:
        ensure_py_spy()
    sys.exit(asyncio.run(main_async(quick, profile)))


if __name__ == "__main__":
    main()
