"""What a partner reads: each event type with its schema, an example and how to verify the
signature; and the history of changes to its configuration (the audit trail)."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import POOL
from service.api.parsing import validate
from service.core import audit
from service.core.examples import example_payload
from service.core.notification_types import NOTIFICATION_TYPES, payload_schema
from service.core.schemas import AuditEventQuery
from service.portal.pages.common import (
    TYPE_NAMES,
    offset_of,
    paging,
    partner_id_of,
    partner_of,
)
from service.portal.rendering import render

routes = web.RouteTableDef()
HISTORY_PAGE = 25

PYTHON_SNIPPET = """\
from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook("whsec_...")  # this callback's signing secret


def handle(body: bytes, headers: dict[str, str]) -> int:
    try:
        payload = webhook.verify(body, headers)  # the raw body, before parsing
    except WebhookVerificationError:
        return 400
    # store payload, deduplicated on headers["webhook-id"], then answer 2xx
    return 204"""

NODE_SNIPPET = """\
import { Webhook } from "standardwebhooks";

const webhook = new Webhook("whsec_...");  // this callback's signing secret

// Express: app.post("/hooks", express.raw({ type: "application/json" }), handle)
function handle(req, res) {
  try {
    const payload = webhook.verify(req.body, req.headers);  // the raw body
    // store payload, deduplicated on req.headers["webhook-id"], then answer 2xx
    res.sendStatus(204);
  } catch (error) {
    res.sendStatus(400);
  }
}"""


@routes.get("/event-types", name="event_types")
async def event_types(request: web.Request) -> web.StreamResponse:
    types = [
        {
            "id": notification_type,
            "name": TYPE_NAMES[notification_type],
            "schema": payload_schema(notification_type),
            "example": example_payload(notification_type),
        }
        for notification_type in sorted(NOTIFICATION_TYPES)
    ]
    return render(
        request,
        "event_types.html",
        title="Event types",
        partner=await partner_of(request),
        types=types,
        python_snippet=PYTHON_SNIPPET,
        node_snippet=NODE_SNIPPET,
    )


@routes.get("/history", name="history")
async def history(request: web.Request) -> web.StreamResponse:
    wanted = validate(AuditEventQuery, {"offset": offset_of(request), "limit": HISTORY_PAGE})
    page = await audit.list_partner_audit_events(
        request.config_dict[POOL], wanted, partner_id_of(request)
    )
    return render(
        request,
        "history.html",
        title="History",
        partner=await partner_of(request),
        page=page,
        type_names=TYPE_NAMES,
        **paging(request, page.offset, HISTORY_PAGE, page.total),
    )
