"""The README's "Your first webhook" block, run exactly as a newcomer pastes it.

The block is read from README.md, so the README cannot drift from what works. Only the two
ports are changed (to free ones); everything else runs as written: ``serve`` on the embedded
PostgreSQL with the loopback network allowed (as the README's ``make run`` line starts it), the
token, the partner, a callback per notification type, the receiver of ``docs/examples``, three
echoes and the delivery log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.polling import eventually
from tests.support.processes import Process, free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LOOPBACK = "CALLBACKHUB_ALLOWED_NETWORKS=127.0.0.0/8,::1/128 make run"
BLOCK = re.compile(
    r"<!-- first-webhook:start -->\s*```sh\n(.*?)```\s*<!-- first-webhook:end -->", re.S
)


def first_webhook_block() -> str:
    found = BLOCK.search(README)
    assert found, "README.md has no first-webhook block"
    return found.group(1)


@pytest.fixture
def newcomer_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that looks like a fresh checkout after ``make run``: the virtualenv and the
    docs, and nothing else (the data folder ``.callbackhub`` is made by ``serve``)."""
    for name in (".venv", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    yield tmp_path
    pid_file = tmp_path / ".callbackhub" / "postgres" / "postmaster.pid"
    if pid_file.exists():  # the test failed before serve stopped it: fast shutdown
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


def newcomer_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKHUB_")}
    name, _, value = LOOPBACK.removesuffix(" make run").partition("=")
    return env | {name: value, "CALLBACKHUB_PORT": str(port)}


def start_shell(
    script: str, folder: Path, env: dict[str, str], output: Path
) -> subprocess.Popen[bytes]:
    """bash running ``script`` as a terminal would, in a session of its own: the receiver it
    starts in the background is ended with it."""
    with output.open("wb") as terminal:
        return subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_the_readme_first_webhook_block_delivers_every_type_verified(
    newcomer_folder: Path,
) -> None:
    assert LOOPBACK in README
    block = first_webhook_block()
    api_port, receiver_port = free_port(), free_port()
    assert block.count("http://127.0.0.1:8080") == 1 and block.count("9000") == 2
    script = block.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{api_port}")
    script = script.replace("9000", str(receiver_port))

    env = newcomer_env(api_port)
    serve = Process(
        "serve", ["serve"], env, newcomer_folder / "serve.log", port=api_port, cwd=newcomer_folder
    ).spawn()
    output = newcomer_folder / "terminal-2.txt"
    shell: subprocess.Popen[bytes] | None = None
    try:
        await serve.wait_ready(timeout=120)  # initdb of a fresh embedded cluster
        shell = start_shell(script, newcomer_folder, env, output)
        exit_code = await asyncio.to_thread(shell.wait, 120)
        text = output.read_text()
        assert exit_code == 0, text

        # The receiver prints from the background, so its lines can land between an echo's
        # answer and the newline curl writes after it: find both wherever they are.
        echoes = re.findall(r'\{"notificationId": "[^"]+", "status": "[a-z]+"\}', text)
        accepted = [json.loads(echo) for echo in echoes]
        ids = [a["notificationId"] for a in accepted if a.get("status") == "queued"]
        assert len(ids) == 3, text

        def verified() -> dict[str, str]:
            found = re.findall(r"verified type (\d+) (\S+)", output.read_text())
            return {webhook_id: kind for kind, webhook_id in found}  # webhook-id -> type

        seen = await eventually(
            lambda: asyncio.to_thread(verified), lambda found: len(found) >= 3, timeout=30
        )
        assert seen == dict(zip(ids, ["1", "2", "3"], strict=True))
        assert "REFUSED" not in output.read_text()

        log = json.JSONDecoder().raw_decode(text[text.rindex("\n{\n") + 1 :])[0]
        assert {item["notificationId"] for item in log["items"]} == set(ids)
        assert log["total"] == 3
    finally:
        if shell is not None:
            os.killpg(shell.pid, signal.SIGTERM)
        await serve.terminate()
