"""The bench's processes: start them with their own log file, wait until they serve, stop them,
and keep the peak resident memory (VmHWM, which the kernel tracks) of each and its children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

SAMPLE_INTERVAL = 0.2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def _label(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        command = " ".join(process.cmdline())
        if "resource_tracker" in command:
            return "resource tracker"
        if "spawn_main" in command:
            return "worker"
    return "child"


@dataclass
class Proc:
    """One process of the bench: ``role`` groups the figures (serve, dispatcher, ...)."""

    name: str
    role: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def family(self) -> list[tuple[int, str]]:
        """This process and its descendants, as (pid, label)."""
        if not self.running():
            return []
        found = [(self.pid, "main")]
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                found.append((child.pid, _label(child)))
        return found

    def cpu_seconds(self) -> float:
        """CPU time used so far by this process and its descendants."""
        return tree_cpu_seconds(self.pid) if self.running() else 0.0

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 - a deadline
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:.0f}s")
            await asyncio.sleep(0.05)
        return self.popen.returncode

    async def stop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline
        """SIGTERM to the process group, then SIGKILL after ``timeout``."""
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            await self.wait(timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            await self.wait(10)


class MemoryWatch:
    """Samples the peak RSS of every registered process (and its children) until stopped."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self.peaks: dict[str, dict[str, object]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, proc: Proc) -> Proc:
        self._procs.append(proc)
        return proc

    def sample(self) -> None:
        for proc in self._procs:
            for pid, label in proc.family():
                key = f"{proc.name} [{label} {pid}]" if label != "main" else proc.name
                peak = _peak_rss_mb(pid)
                entry = self.peaks.setdefault(key, {"role": proc.role, "label": label})
                entry["peak_rss_mb"] = max(float(entry.get("peak_rss_mb", 0.0)), peak)  # type: ignore[arg-type]

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_INTERVAL)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.sample()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peak_of(self, role: str) -> float:
        values = [
            float(e["peak_rss_mb"])  # type: ignore[arg-type]
            for e in self.peaks.values()
            if e["role"] == role and e["label"] != "resource tracker"
        ]
        return max(values, default=0.0)


async def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Until ``url`` answers 200; fails at once when the process exits."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not ready in {timeout:.0f}s:\n{proc.log_tail()}")
            await asyncio.sleep(0.1)


def listening_workers(proc: Proc, port: int) -> int:
    """How many of the process's family listen on ``port`` (for ``serve --workers N``)."""
    count = 0
    for pid, _ in proc.family():
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    count += 1
                    break
    return count


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
