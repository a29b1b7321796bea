"""Running ``callbackhub`` commands as a person does: the console script, to completion."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

# The console script next to this interpreter: what `make run` and a newcomer call.
CONSOLE_SCRIPT = str(Path(sys.executable).parent / "callbackhub")
COMMAND_TIMEOUT = 60.0


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def run(*args: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT) -> Finished:  # noqa: ASYNC109
    """Run ``callbackhub ARGS`` to completion (killed after ``timeout`` seconds)."""
    process = await asyncio.create_subprocess_exec(
        CONSOLE_SCRIPT,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(
            f"callbackhub {' '.join(args)} still running after {timeout}s"
        ) from None
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())
