"""The notification types and the payload each one carries.

Adding a type means adding a model here (one class, registered in ``NOTIFICATION_TYPES``) and a
migration that inserts its row into ``notification_types``; nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

SUBJECT_FIELDS = ("processUniqueId", "simulationUniqueId")


SUBJECT_RULE = "exactly one of processUniqueId or simulationUniqueId is required"
SUBJECT_RULE_TEXT = (
    "Exactly one of processUniqueId or simulationUniqueId is required: the subject, by which"
    " ordered delivery keeps the order. Leave the other one out (null is refused)."
)
SUBJECT_NOT_NULL = "must be a UUID string; leave the field out when it is not the subject"


def _subject_schema(kind: str) -> WithJsonSchema:
    """Published as what is accepted: a UUID string, never null, with no default."""
    description = (
        f"The {kind} this notification is about. Exactly one of processUniqueId and"
        " simulationUniqueId."
    )
    return WithJsonSchema({"type": "string", "format": "uuid", "description": description})


# The API refuses NUL characters in every JSON string (parse_json): PostgreSQL text cannot hold
# them, and partners' parsers stumble on them. The published schemas say so.
NO_NUL = "^[^\u0000]*$"


def publish_no_nul(schema: dict[str, Any]) -> None:
    """Add the no-NUL pattern to every string in ``schema`` (a model's JSON schema)."""
    for node in _walk(schema):
        if node.get("type") == "string" and "format" not in node and "enum" not in node:
            node.setdefault("pattern", NO_NUL)


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [found for item in node for found in _walk(item)]
    if not isinstance(node, dict):
        return []
    return [node, *(found for value in node.values() for found in _walk(value))]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


ProcessId = Annotated[UUID | None, _subject_schema("process")]
SimulationId = Annotated[UUID | None, _subject_schema("simulation")]


def subject_errors(data: object) -> list[dict[str, str]]:
    """The exactly-one-subject rule on raw JSON: one error per subject field when it fails."""
    if not isinstance(data, dict):
        return []
    present = [name for name in SUBJECT_FIELDS if data.get(name) is not None]
    if len(present) == 1:
        return []
    return [{"field": name, "message": SUBJECT_RULE} for name in SUBJECT_FIELDS]


def _payload_schema_extra(schema: dict[str, Any]) -> None:
    schema["description"] = SUBJECT_RULE_TEXT
    publish_no_nul(schema)


class NotificationPayload(BaseModel):
    """Fields every payload has: exactly one subject, a process or a simulation."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=False,
        # The exactly-one-subject rule is said in words, not as a top-level oneOf: client
        # generators turn such a oneOf into classes that hold only the subject and lose every
        # other field. The server enforces the rule (400 naming both fields).
        json_schema_extra=_payload_schema_extra,
    )

    process_unique_id: ProcessId = Field(default=None, json_schema_extra=_no_default)
    simulation_unique_id: SimulationId = Field(default=None, json_schema_extra=_no_default)

    @field_validator("process_unique_id", "simulation_unique_id", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # given as null: only leaving the field out means "not the subject"
            raise PydanticCustomError("subject_null", SUBJECT_NOT_NULL)
        return value

    @model_validator(mode="after")
    def _exactly_one_subject(self) -> NotificationPayload:
        if (self.process_unique_id is None) == (self.simulation_unique_id is None):
            raise PydanticCustomError("exactly_one_subject", SUBJECT_RULE)
        return self

    @property
    def subject(self) -> UUID:
        """What the order of delivery is kept by: the process or the simulation."""
        subject = self.process_unique_id or self.simulation_unique_id
        assert subject is not None
        return subject


class WorkflowStateChange(NotificationPayload):
    status_id: int
    status_description: str = Field(min_length=1, max_length=500)
    previous_status_id: int | None = None
    changed_at: AwareDatetime


class Notes(NotificationPayload):
    note_unique_id: UUID
    subject_line: str = Field(alias="subject", min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=10000)
    author: str | None = Field(default=None, max_length=200)
    created_at: AwareDatetime


class Document(NotificationPayload):
    document_unique_id: UUID
    document_type_id: int
    file_name: str = Field(min_length=1, max_length=255)
    title: str | None = Field(default=None, max_length=500)
    action: Literal["created", "updated", "deleted"]
    occurred_at: AwareDatetime


NOTIFICATION_TYPES: dict[int, type[NotificationPayload]] = {
    1: WorkflowStateChange,
    2: Notes,
    3: Document,
}

# Ordered delivery is on by default where the order is the point: state changes.
ORDERED_BY_DEFAULT = frozenset({1})


def payload_model(notification_type: int) -> type[NotificationPayload] | None:
    return NOTIFICATION_TYPES.get(notification_type)


def type_name(notification_type: int) -> str:
    return NOTIFICATION_TYPES[notification_type].__name__


def payload_schema(notification_type: int) -> dict[str, Any]:
    return NOTIFICATION_TYPES[notification_type].model_json_schema(by_alias=True)
