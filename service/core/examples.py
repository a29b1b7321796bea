"""Example payloads, generated from a notification type's JSON schema: valid, with a fresh
subject id, for the portal's "Send test notification" and its Event types page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from service.core.notification_types import SUBJECT_FIELDS, payload_schema


def example_payload(notification_type: int) -> dict[str, Any]:
    """Every property the schema names, but only one subject (processUniqueId, fresh)."""
    schema = payload_schema(notification_type)
    example: dict[str, Any] = {SUBJECT_FIELDS[0]: str(uuid.uuid4())}
    for name, prop in schema["properties"].items():
        if name not in SUBJECT_FIELDS:
            example[name] = _example_value(name, prop)
    return example


def _example_value(name: str, prop: dict[str, Any]) -> Any:
    if "anyOf" in prop:  # optional: the first kind that is not null
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    if "enum" in prop:
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "integer":
        return max(prop.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    if prop.get("format") == "uuid":
        return str(uuid.uuid4())
    if prop.get("format") == "date-time":
        return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    text = f"Example {name}"
    return text[: prop.get("maxLength", len(text))]
