"""A client generated from the served ``/openapi.json`` by ``openapi-python-client`` (the most
used Python generator) does the whole job: create a partner, register a callback of each type,
echo one notification of each type, and read the delivery log, all through the generated code.

It proves that the document describes what the service does in a form a generator keeps whole:
echo's body is tied to the type in its path, and no payload field is lost to the subject rule.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.support.fleet import Fleet
from tests.support.polling import eventually
from tests.support.processes import callbackhub_env, serve, start
from tests.support.tokens import token

PACKAGE = "callbackhub_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def generate(document: Path, folder: Path) -> None:
    """Run the generator as a user would (its ruff post-hooks find ruff beside it)."""
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(GENERATOR), "generate", "--path", str(document), "--meta", "none"]
    subprocess.run(
        [*command, "--output-path", str(folder / PACKAGE)],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """A function importing a module of the generated package, which is then unloaded."""
    sys.path.insert(0, str(tmp_path))

    def load(name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    yield load
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


async def test_a_generated_client_emits_every_type_and_reads_the_log(
    fleet: Fleet, database: str, tmp_path: Path, generated: Any
) -> None:
    api = await start(
        fleet.add(serve("api", callbackhub_env(database, tmp_path / "data"), fleet.logs))
    )
    receiver = await fleet.receiver()
    async with aiohttp.ClientSession() as http, http.get(f"{api.url}/openapi.json") as response:
        (tmp_path / "openapi.json").write_text(json.dumps(await response.json()))
    await asyncio.to_thread(generate, tmp_path / "openapi.json", tmp_path)

    client_module, models = generated("client"), generated("models")
    client = client_module.AuthenticatedClient(base_url=api.url, token=token("partners:admin"))
    create_partner = generated("api.partners.create_partner")
    partner = await create_partner.asyncio(
        client=client, body=models.PartnerCreate(name="Generated Ltd")
    )
    assert isinstance(partner, models.Partner), partner

    update_callback = generated("api.callbacks.update_callback")
    for notification_type in (1, 2, 3):
        created = await update_callback.asyncio(
            partner.partner_unique_id,
            models.UpdateCallbackNotificationType(notification_type),
            client=client,
            body=models.CallbackUpdate(url=receiver.url),
        )
        assert isinstance(created, models.CallbackCreated), created
        assert created.signing_secret.startswith("whsec_")

    now = datetime.now(UTC)
    echoes = {
        "echo_workflow_state_change": models.WorkflowStateChangeByProcess(
            process_unique_id=uuid.uuid4(),
            status_id=5,
            status_description="Under review",
            changed_at=now,
        ),
        "echo_notes": models.NotesBySimulation(
            simulation_unique_id=uuid.uuid4(),
            note_unique_id=uuid.uuid4(),
            subject="Income proof",
            text="Please upload the latest payslip.",
            created_at=now,
        ),
        "echo_document": models.DocumentByProcess(
            process_unique_id=uuid.uuid4(),
            document_unique_id=uuid.uuid4(),
            document_type_id=7,
            file_name="payslip.pdf",
            action=models.DocumentByProcessAction.CREATED,
            occurred_at=now,
        ),
    }
    ids = []
    for operation, body in echoes.items():
        echo = generated(f"api.notifications.{operation}")
        accepted = await echo.asyncio(partner.partner_unique_id, client=client, body=body)
        assert isinstance(accepted, models.EchoAccepted), accepted
        ids.append(str(accepted.notification_id))

    list_notifications = generated("api.deliveries.list_notifications")

    async def delivery_log() -> Any:
        return await list_notifications.asyncio(partner.partner_unique_id, client=client)

    page = await eventually(
        delivery_log,
        lambda page: [str(i.status) for i in page.items] == ["delivered"] * 3,
        timeout=30,
    )
    assert {str(item.notification_id) for item in page.items} == set(ids)
    # Every field the generated models carried arrived: none was lost to the subject rule.
    received = {r.headers["webhook-id"]: json.loads(r.body) for r in receiver.received}
    assert received[ids[0]]["statusId"] == 5
    assert received[ids[1]]["subject"] == "Income proof"
    assert received[ids[2]]["fileName"] == "payslip.pdf"
    assert "processUniqueId" not in received[ids[1]]
