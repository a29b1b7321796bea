"""Fixtures of the process-level tests: the processes and receivers a test starts (all ended
when it ends, their logs shown when it fails) and a PostgreSQL the test may stop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import pytest

from tests.support.chaos import Emitter
from tests.support.controlled_postgres import ControlledPostgres
from tests.support.postgres import with_database
from tests.support.processes import Process
from tests.support.receiver import Receiver


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


class Startable(Protocol):
    async def start(self) -> Any: ...
    async def stop(self) -> None: ...


PartnerT = TypeVar("PartnerT", bound=Startable)


@dataclass
class Fleet:
    """Everything a scenario started, so that teardown can end it."""

    logs: Path
    processes: list[Process] = field(default_factory=list)
    receivers: list[Receiver] = field(default_factory=list)
    partners: list[Any] = field(default_factory=list)
    emitters: list[Emitter] = field(default_factory=list)

    def add(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    async def receiver(self, receiver: Receiver | None = None) -> Receiver:
        started = await (receiver or Receiver()).start()
        self.receivers.append(started)
        return started

    def emitter(self, emitter: Emitter) -> Emitter:
        """Start an emitter; teardown aborts it if the test did not see it finish."""
        self.emitters.append(emitter.start())
        return emitter

    async def partner(self, partner: PartnerT) -> PartnerT:
        """Start any other partner's server (see ``tests.support.chaos``) and stop it later."""
        started = await partner.start()
        self.partners.append(started)
        return started

    def log_tails(self) -> str:
        return "\n".join(f"=== {p.name} ===\n{p.log_tail(60)}" for p in self.processes)


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    started = Fleet(tmp_path)
    yield started
    for emitter in started.emitters:
        await emitter.abort()
    for process in started.processes:
        process.kill()
    for receiver in [*started.receivers, *started.partners]:
        await receiver.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(started.log_tails())


@dataclass
class ControlledDatabase:
    server: ControlledPostgres
    dsn: str


@pytest.fixture
async def controlled_database() -> AsyncIterator[ControlledDatabase]:
    """An empty database on a PostgreSQL server of this test's own, which it may stop."""
    folder = Path("/tmp") / f"cbh-cpg-{uuid.uuid4().hex[:8]}"  # short: socket path limit
    server = ControlledPostgres(folder)
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute('CREATE DATABASE "callbackhub"')
    finally:
        await admin.close()
    yield ControlledDatabase(server, with_database(server.dsn, "callbackhub"))
    server.destroy()
