"""What a process-level test starts: its fleet of processes, receivers, partners and emitters
(all ended when the test ends), and a PostgreSQL server of its own that it may stop. The
fixtures handing them out are in ``tests.support.e2e_fixtures``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tests.support.chaos import Emitter
from tests.support.controlled_postgres import ControlledPostgres
from tests.support.processes import Process
from tests.support.receiver import Receiver


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


@dataclass
class ControlledDatabase:
    server: ControlledPostgres
    dsn: str
