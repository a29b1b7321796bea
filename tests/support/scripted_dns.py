"""A DNS that answers from a script: fake names for the URL guard's tests, no network at all.

``answers`` maps a name to its successive answers (each a list of addresses); the last answer
repeats forever, so ``[["127.0.0.2"], ["127.0.0.1"]]`` is a name that rebinds after the first
lookup. Names not in the script do not exist; names in ``silent`` never answer.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult


@dataclass
class ScriptedDns(AbstractResolver):
    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        if host in self.silent:
            await asyncio.Event().wait()
        script = self.answers.get(host)
        if not script:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
