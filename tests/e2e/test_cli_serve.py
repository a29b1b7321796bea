"""The ``callbackhub`` command as a newcomer runs it: real processes, real HTTP, real PostgreSQL.

``serve`` without ``CALLBACKHUB_DATABASE_URL`` starts its own embedded PostgreSQL in the data
folder and generates a JWT secret there, which ``callbackhub token`` then signs with.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import jwt
import pytest

import sql
from tests.support import postgres
from tests.support.cli import run
from tests.support.fleet import Fleet
from tests.support.polling import eventually
from tests.support.processes import callbackhub_env, free_port, serve


def embedded_env(data_dir: Path) -> dict[str, str]:
    """A newcomer's environment: no database URL, no JWT secret, only a data folder."""
    env = callbackhub_env("unused", data_dir)
    for name in ("DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEYS"):
        env.pop(f"CALLBACKHUB_{name}")
    return env


@pytest.fixture
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    """The data folder of an embedded PostgreSQL; a server the test left running is stopped."""
    data_dir = tmp_path / "data"
    yield data_dir
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if pid_file.exists():  # the test failed before ``serve`` stopped it: fast shutdown
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


async def test_serve_on_embedded_postgres_creates_lists_and_deletes_a_callback(
    fleet: Fleet, embedded_data_dir: Path
) -> None:
    env = embedded_env(embedded_data_dir)
    server = fleet.add(serve("embedded", env, fleet.logs))
    await server.spawn().wait_ready(timeout=120)  # initdb of a fresh cluster takes a while
    assert (embedded_data_dir / "postgres" / "PG_VERSION").exists()
    secret_file = embedded_data_dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    hint = next(line for line in server.log_text().splitlines() if " token --scope" in line)
    script = hint.split()[0]
    assert script.endswith("callbackhub")
    assert await asyncio.to_thread(os.path.exists, script)  # the hint runs as printed
    assert secret_file.read_text().strip() not in server.log_text()
    keys_file = embedded_data_dir / "encryption-keys"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert "generated the key that seals stored secrets" in server.log_text()
    assert keys_file.read_text().split(":")[1].strip() not in server.log_text()

    minted = await run("token", "--scope", "partners:admin", env=env)
    assert minted.returncode == 0, minted.stderr
    headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}

    async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
        async with http.post("/partners", json={"name": "Newcomer Ltd"}) as response:
            assert response.status == 201, await response.text()
            partner = (await response.json())["partnerUniqueId"]
        callback = f"/partners/{partner}/callbacks/1"
        async with http.put(callback, json={"url": "https://newcomer.example/hook"}) as response:
            assert response.status == 201, await response.text()
            assert (await response.json())["signingSecret"].startswith("whsec_")
        async with http.get(f"/partners/{partner}/callbacks") as response:
            page = await response.json()
            assert [item["url"] for item in page["items"]] == ["https://newcomer.example/hook"]
        async with http.delete(callback) as response:
            assert response.status == 204
        async with http.get(f"/partners/{partner}/callbacks") as response:
            assert (await response.json())["total"] == 0
        async with http.get(callback, headers={"Authorization": "Bearer nonsense"}) as response:
            assert response.status == 401

    assert await server.terminate() == 0
    # The embedded server stops with the last process that used it.
    assert not (embedded_data_dir / "postgres" / "postmaster.pid").exists()


async def test_token_for_a_partner_is_bound_to_it(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "data")
    partner = uuid.uuid4()
    minted = await run("token", "--scope", "callbacks:read", "--partner", str(partner), env=env)
    assert minted.returncode == 0, minted.stderr
    secret = (tmp_path / "data" / "jwt-secret").read_text().strip()
    claims = jwt.decode(minted.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["scope"] == "callbacks:read"
    assert claims["partner_id"] == str(partner)
    assert claims["exp"] - claims["iat"] == 3600
    unknown = await run("token", "--scope", "callbacks:read everything", env=env)
    assert unknown.returncode != 0
    assert "everything" in unknown.stderr


async def test_partners_add_and_list(database: str, tmp_path: Path) -> None:
    env = callbackhub_env(database, tmp_path / "data")
    chosen = uuid.uuid4()
    added = await run("partners", "add", "--name", "Acme Brokers", "--id", str(chosen), env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"{chosen}\tAcme Brokers"
    second = await run("partners", "add", "--name", "Beta", env=env)
    assert second.returncode == 0, second.stderr
    second_id = uuid.UUID(second.stdout.split("\t")[0])

    listed = await run("partners", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(row[0], row[1]) for row in rows] == [
        (str(chosen), "Acme Brokers"),
        (str(second_id), "Beta"),
    ]

    connection = await asyncpg.connect(database)
    try:
        stored = await connection.fetch("SELECT id, name FROM partners ORDER BY created_at")
    finally:
        await connection.close()
    assert [(row["id"], row["name"]) for row in stored] == [
        (chosen, "Acme Brokers"),
        (second_id, "Beta"),
    ]


async def test_partners_add_with_a_taken_id_fails_cleanly(database: str, tmp_path: Path) -> None:
    env = callbackhub_env(database, tmp_path / "data")
    chosen = str(uuid.uuid4())
    assert (
        await run("partners", "add", "--name", "First", "--id", chosen, env=env)
    ).returncode == 0
    again = await run("partners", "add", "--name", "Second", "--id", chosen, env=env)
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("name", ["", "n" * 201])
async def test_partners_add_with_an_invalid_name_fails_cleanly(
    database: str, tmp_path: Path, name: str
) -> None:
    env = callbackhub_env(database, tmp_path / "data")
    refused = await run("partners", "add", "--name", name, env=env)
    assert refused.returncode != 0
    assert "name" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (await run("partners", "list", env=env)).stdout == ""


async def test_migrate_applies_pending_migrations_once(server_dsn: str, tmp_path: Path) -> None:
    empty = await postgres.create_database(server_dsn, template=None)
    try:
        env = callbackhub_env(empty, tmp_path / "data")
        first = await run("migrate", env=env)
        assert first.returncode == 0, first.stderr
        versions = [migration.version for migration in sql.load_migrations()]
        assert first.stdout.strip() == f"applied {len(versions)} migration(s): {versions}"
        second = await run("migrate", env=env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "applied 0 migration(s)"
    finally:
        await postgres.drop_database(server_dsn, empty)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_POOL_MAX", "0"),
        ("DATABASE_CONNECT_TIMEOUT", "soon"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_invalid_configuration_is_one_line_naming_the_variable(
    tmp_path: Path, command: str, variable: str, value: str
) -> None:
    # A database nobody listens on: were the configuration accepted, this would fail too, but
    # differently (and only after the connect timeout).
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/callbackhub"
    env = callbackhub_env(closed, tmp_path / "data", **{variable: value})
    if variable != "DATABASE_CONNECT_TIMEOUT":
        env["CALLBACKHUB_DATABASE_CONNECT_TIMEOUT"] = "2"
    finished = await run(command, env=env)
    assert finished.returncode != 0
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert f"CALLBACKHUB_{variable}" in lines[0]
    assert "Traceback" not in finished.stderr


@pytest.mark.parametrize("command", [["serve"], ["serve", "--no-dispatcher"], ["migrate"]])
async def test_unreachable_database_exits_with_a_clear_message(
    tmp_path: Path, command: list[str]
) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/callbackhub"
    env = callbackhub_env(
        closed, tmp_path / "data", DATABASE_CONNECT_TIMEOUT="2", PORT=str(free_port())
    )
    finished = await run(*command, env=env, timeout=30)
    assert finished.returncode != 0
    assert "database unreachable" in finished.stderr
    assert "Traceback" not in finished.stderr


def postgres_processes(data_dir: Path) -> list[int]:
    """The ids of the postgres processes serving the data folder ``data_dir``."""
    import psutil

    folder = str((data_dir / "postgres").resolve())
    found = []
    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and folder in cmdline:
            found.append(process.pid)
    return found


async def test_a_clean_stop_after_a_crash_stops_the_embedded_postgres(
    fleet: Fleet, embedded_data_dir: Path
) -> None:
    env = embedded_env(embedded_data_dir)
    crashed = fleet.add(serve("crashed", env, fleet.logs))
    await crashed.spawn().wait_ready(timeout=120)
    minted = await run("token", "--scope", "partners:admin", env=env)
    headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}
    async with (
        aiohttp.ClientSession(base_url=crashed.url, headers=headers) as http,
        http.post("/partners", json={"name": "Survivor Ltd"}) as response,
    ):
        assert response.status == 201, await response.text()
    crashed.kill()  # kill -9: it never takes itself off the server's list of users
    assert postgres_processes(embedded_data_dir), "the server outlives a crashed user"

    again = fleet.add(serve("again", env, fleet.logs))
    await again.spawn().wait_ready(timeout=120)
    async with (
        aiohttp.ClientSession(base_url=again.url, headers=headers) as http,
        http.get("/partners") as response,
    ):
        names = [item["name"] for item in (await response.json())["items"]]
    assert names == ["Survivor Ltd"]  # the data is intact
    assert await again.terminate() == 0

    await eventually(
        lambda: asyncio.to_thread(postgres_processes, embedded_data_dir),
        lambda pids: pids == [],
        timeout=30,
    )
    assert not (embedded_data_dir / "postgres" / "postmaster.pid").exists()
