"""Real ``callbackhub`` processes for the process-level tests: start them with an environment,
wait until they are ready (with a deadline), and end them with SIGKILL or SIGTERM.

Each process writes its output to a log file of its own, which a failing test can show.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.keys import ENCRYPTION_KEYS
from tests.support.tokens import JWT_SECRET

READY_TIMEOUT = 30.0

# Fast settings: a lease outlives a request by delivery timeout + margin = 3 s, so the leases of
# a killed process are claimed again within seconds.
FAST_SETTINGS = {
    "CALLBACKHUB_JWT_SECRET": JWT_SECRET,
    "CALLBACKHUB_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
    "CALLBACKHUB_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "CALLBACKHUB_RETRY_SCHEDULE": "0.2,0.5,1",
    "CALLBACKHUB_RETRY_JITTER": "0",
    "CALLBACKHUB_DELIVERY_TIMEOUT": "2",
    "CALLBACKHUB_LEASE_MARGIN": "1",
    "CALLBACKHUB_POLL_INTERVAL": "0.2",
    "CALLBACKHUB_SHUTDOWN_GRACE": "2",
    # A circuit that opens probes again soon (tests of the circuit set their own).
    "CALLBACKHUB_CIRCUIT_PROBE_INTERVAL": "0.1",
    "CALLBACKHUB_CIRCUIT_PROBE_MAX_INTERVAL": "0.4",
    "CALLBACKHUB_DATABASE_CONNECT_TIMEOUT": "60",
    "CALLBACKHUB_LOG_LEVEL": "INFO",
    "CALLBACKHUB_LOG_FORMAT": "console",
}


def callbackhub_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a callbackhub process: this one's, the fast settings, the overrides
    (given without the ``CALLBACKHUB_`` prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKHUB_")}
    env.update(FAST_SETTINGS)
    env["CALLBACKHUB_DATABASE_URL"] = database_url
    env["CALLBACKHUB_DATA_DIR"] = str(data_dir)
    env.update({f"CALLBACKHUB_{name.upper()}": value for name, value in overrides.items()})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One callbackhub subprocess."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self) -> Process:
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: callbackhub {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "service", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for it
            )
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    async def terminate(self, timeout: float = 20.0) -> int:  # noqa: ASYNC109 - a deadline
        """SIGTERM, then wait for the exit code (SIGKILL and fail after ``timeout``)."""
        assert self.popen is not None
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s")
            await asyncio.sleep(0.05)
        return self.popen.returncode

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> Process:  # noqa: ASYNC109
        """Until the API answers ``/health/ready`` with 200, or for a dispatcher alone, until
        it logs that it started. Fails at once when the process exits."""
        deadline = time.monotonic() + timeout
        while not await self._ready():
            if not self.running():
                raise AssertionError(f"{self.name} exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return self

    async def _ready(self) -> bool:
        if self.port is None:
            return self._started_lines() >= self._spawns()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url}/health/ready", timeout=aiohttp.ClientTimeout(2)) as r,
            ):
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _spawns(self) -> int:
        return self.log_text().count(f"--- {self.name}: ")

    def _started_lines(self) -> int:
        return self.log_text().count("dispatcher started")


def serve(name: str, env: dict[str, str], logs: Path, *, dispatcher: bool = True) -> Process:
    """``callbackhub serve`` (not started yet) on a free port of 127.0.0.1."""
    port = free_port()
    env = {**env, "CALLBACKHUB_HOST": "127.0.0.1", "CALLBACKHUB_PORT": str(port)}
    args = ["serve"] + ([] if dispatcher else ["--no-dispatcher"])
    return Process(name, args, env, logs / f"{name}.log", port=port)


def dispatcher(name: str, env: dict[str, str], logs: Path) -> Process:
    """``callbackhub dispatcher`` (not started yet)."""
    return Process(name, ["dispatcher"], env, logs / f"{name}.log")


async def start(process: Process) -> Process:
    return await process.spawn().wait_ready()


async def restart(process: Process) -> Process:
    """Start it again, on a fresh port when it serves HTTP (the old one may linger)."""
    if process.port is not None:
        process.port = free_port()
        process.env = {**process.env, "CALLBACKHUB_PORT": str(process.port)}
    return await start(process)
