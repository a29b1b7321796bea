"""The API's request and response bodies. The views and ``/openapi.json`` both use these."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from service.core.notification_types import publish_no_nul
from service.core.statuses import DeliveryStatus, DisabledReason, FailureReason


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=publish_no_nul,
    )

    def dump(self, exclude_none: bool = False) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=exclude_none)


class Pagination(ApiModel):
    # Bounded by the SQL types they are bound to (bigint, integer): past them asyncpg raises.
    offset: int = Field(default=0, ge=0, le=2**63 - 1)
    limit: int = Field(default=20, ge=1, le=100)


class PartnerCreate(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    partner_unique_id: UUID | None = None


class Partner(ApiModel):
    partner_unique_id: UUID
    name: str
    created_at: datetime


class PartnerPage(ApiModel):
    items: list[Partner]
    offset: int
    limit: int
    total: int


class NotificationTypeInfo(ApiModel):
    id: int
    name: str
    schema_: dict[str, Any] = Field(alias="schema")


class NotificationTypeList(ApiModel):
    items: list[NotificationTypeInfo]


class BasicAuth(ApiModel):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=200, pattern=r"^[^:\x00-\x1f\x7f]+$")
    password: str = Field(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]+$")


class BearerAuth(ApiModel):
    type: Literal["bearer"]
    token: str = Field(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")


class OAuth2ClientCredentials(ApiModel):
    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri"})
    client_id: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")
    client_secret: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$")
    scope: str | None = Field(
        default=None, max_length=1000, pattern=r"^[\x21\x23-\x5b\x5d-\x7e ]+$"
    )
    audience: str | None = Field(default=None, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]+$")
    client_auth: Literal["basic", "post"] = "basic"


class MutualTls(ApiModel):
    """The client certificate presented on TLS connections to this callback (PEM)."""

    type: Literal["mtls"]
    certificate: str = Field(min_length=1, max_length=100_000)
    private_key: str = Field(min_length=1, max_length=100_000, description="unencrypted PEM")


class TlsOptions(ApiModel):
    ca_certificate: str = Field(
        min_length=1,
        max_length=100_000,
        description="PEM: the CA(s) this callback's server certificate is checked against",
    )


OutboundAuth = Annotated[
    BasicAuth | BearerAuth | OAuth2ClientCredentials | MutualTls, Field(discriminator="type")
]
# Headers callbackhub sets itself, which a callback cannot replace (and webhook-* besides).
RESERVED_HEADERS = (
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "notification-type-id",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "connection",
)


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# An HTTP token (RFC 9110) that is not one of the reserved names: the published schema says
# exactly what Callback Update accepts.
HEADER_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}"  # noqa: S105 - the RFC 9110 token grammar
HEADER_NAME = (
    "^(?!(?:" + "|".join(_any_case(name) for name in RESERVED_HEADERS) + ")$)"
    "(?!" + _any_case("webhook-") + ")" + HEADER_TOKEN + "$"
)
HEADER_VALUE = r"^[^\r\n\x00]*$"
# Checked by service.core.delivery_options, with a message per header; published as it checks.
HeaderMap = Annotated[
    dict[str, str],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 20,
            "propertyNames": {"pattern": HEADER_NAME},
            "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": HEADER_VALUE},
        }
    ),
]


def _whole_number(value: object) -> object:
    """JSON Schema counts 42.0 as an integer; strict validation would not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


InFlightLimit = Annotated[int, Field(ge=1, le=256), BeforeValidator(_whole_number)]


class CallbackUpdate(ApiModel):
    # An absolute http(s) URL; checked in full by ``service.core.url_guard``.
    url: str = Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri"})
    enabled: bool = True
    description: str | None = Field(default=None, max_length=1000)
    ordered_delivery: bool | None = None
    # Delivery options (service.core.delivery_options): left out, an option keeps its value;
    # null removes it. Header values and credentials are stored sealed, shown masked.
    headers: HeaderMap | None = Field(
        default=None,
        max_length=20,
        description="sent with every attempt; names are HTTP tokens, values at most 4096 chars",
    )
    auth: OutboundAuth | None = None
    tls: TlsOptions | None = None
    signature: Literal["hmac-sha256", "ed25519"] | None = None
    # Limits (dispatcher/lanes.py), across every dispatcher process together: left out, a
    # limit keeps its value; null resets it (the service default; no rate limit).
    max_in_flight: InFlightLimit | None = Field(
        default=None,
        description="requests in flight at once to this callback (null: the service default, "
        "CALLBACKHUB_MAX_PER_CALLBACK, 8)",
    )
    max_per_second: float | None = Field(
        default=None,
        ge=0.1,
        le=10000,
        allow_inf_nan=False,
        description="requests started per second, evenly spaced (null: no limit)",
    )


# Callback health (a circuit breaker per callback).


class CallbackHealth(ApiModel):
    state: Literal["healthy", "open", "probing"] = Field(
        description="open: no attempts until nextProbeAt; probing: one probe is due or under way"
    )
    consecutive_failures: int
    failing_since: datetime | None = None
    next_probe_at: datetime | None = None
    paused_until: datetime | None = Field(
        default=None, description="a 429 or 503 with Retry-After pauses the callback until then"
    )


class Callback(ApiModel):
    partner_unique_id: UUID
    notification_type: int
    notification_type_name: str
    url: str
    enabled: bool
    description: str | None
    ordered_delivery: bool
    disabled_reason: DisabledReason | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="values masked")
    auth: dict[str, str] | None = Field(default=None, description="secrets masked")
    tls: dict[str, str] | None = None
    signature: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    public_key: str | None = Field(
        default=None, description="ed25519: what the partner verifies signatures with (whpk_…)"
    )
    max_in_flight: int | None = Field(
        default=None, description="null: the service default (CALLBACKHUB_MAX_PER_CALLBACK)"
    )
    max_per_second: float | None = Field(default=None, description="null: no rate limit")
    health: CallbackHealth | None = None
    created_at: datetime
    updated_at: datetime


class CallbackCreated(Callback):
    signing_secret: str | None = Field(
        description="hmac-sha256: the secret the partner verifies with; ed25519: null (see "
        "publicKey: the private key never leaves callbackhub)"
    )


class CallbackPage(ApiModel):
    items: list[Callback]
    offset: int
    limit: int
    total: int


class SigningSecret(ApiModel):
    signing_secret: str | None = Field(description="null for ed25519 (see publicKey)")
    public_key: str | None = None


class EchoAccepted(ApiModel):
    notification_id: UUID
    status: Literal["queued"] = "queued"


def _rfc3339_only(value: object) -> object:
    """A time in a query is RFC 3339 text (pydantic alone would also take a number of seconds)."""
    if isinstance(value, str) and not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 date-time, for example 2026-12-01T00:00:00Z")
    return value


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
QueryTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


QueryText = Annotated[str, AfterValidator(_no_nul)]


class NotificationFilter(Pagination):
    status: DeliveryStatus | None = None
    notification_type: int | None = Field(default=None, ge=1, le=2**31 - 1)
    since: QueryTime | None = Field(default=None, description="accepted at or after")
    until: QueryTime | None = Field(default=None, description="accepted before")
    subject: UUID | None = Field(
        default=None, description="the processUniqueId or simulationUniqueId"
    )


class NotificationSummary(ApiModel):
    notification_id: UUID
    notification_type: int
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failure_reason: FailureReason | None
    blocked_by: UUID | None = None


class NotificationPage(ApiModel):
    items: list[NotificationSummary]
    offset: int
    limit: int
    total: int


class Attempt(ApiModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    response_status: int | None
    response_body: str | None
    error: str | None
    # The webhook-signature header the attempt carried (none when nothing was sent).
    signature: str | None = None


class NotificationDetail(NotificationSummary):
    sequence: int = Field(description="sent as webhook-sequence: its place among its subject's")
    trace_id: str | None = Field(
        default=None, description="the W3C trace id its attempts belong to (tracing on)"
    )
    payload: Any
    attempt_log: list[Attempt]


class RedeliverFailed(ApiModel):
    since: AwareDatetime


class RedeliverAccepted(ApiModel):
    notification_id: UUID
    status: Literal["queued"] = "queued"


class RedeliverFailedAccepted(ApiModel):
    queued: int


class ProblemField(ApiModel):
    field: str
    message: str


class ProblemDetails(ApiModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] | None = None


class HealthStatus(ApiModel):
    status: str
    reason: str | None = None


class AuditEventQuery(Pagination):
    action: QueryText | None = Field(default=None, max_length=100)
    actor: QueryText | None = Field(default=None, max_length=500, description="the actor's sub")
    since: QueryTime | None = None
    until: QueryTime | None = None


class AuditEventFilter(AuditEventQuery):
    partner_unique_id: UUID | None = None


class AuditActor(ApiModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["token", "portal", "cli", "system"]
    sub: str | None
    partner_bound: bool | None = None
    scopes: list[str] | None = None
    session: str | None = None


class AuditEvent(ApiModel):
    id: int
    at: datetime
    action: str
    partner_unique_id: UUID | None
    notification_type: int | None
    actor: AuditActor
    client_address: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditEventPage(ApiModel):
    items: list[AuditEvent]
    offset: int
    limit: int
    total: int


def _whole(value: object) -> object:
    """JSON has no integers apart: 3600.0 is the integer 3600 (JSON Schema says so too)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class PortalLinkRequest(ApiModel):
    access: Literal["manage", "read"] = "manage"
    expires_in: WholeNumber = Field(default=3600, ge=60, le=604800, description="seconds")


class PortalLink(ApiModel):
    url: str
    expires_at: datetime


class PortalSessionsRevoked(ApiModel):
    revoked: int


# Operational events for the platform team.

OperatorEventType = Literal[
    "callback.created",
    "callback.updated",
    "callback.deleted",
    "callback.secret_rotated",
    "callback.disabled",
    "callback.enabled",
    "callback.circuit_opened",
    "callback.circuit_closed",
    "notification.failing",
    "notification.exhausted",
    "notification.recovered",
]


class OperatorWebhookUpdate(ApiModel):
    # An absolute http(s) URL; checked in full by ``service.core.url_guard``.
    url: str = Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri"})
    enabled: bool = True
    events: list[OperatorEventType] | None = Field(
        default=None, min_length=1, description="the event types it receives; null or absent: all"
    )


class OperatorWebhook(ApiModel):
    url: str
    enabled: bool
    events: list[OperatorEventType] | None
    created_at: datetime
    updated_at: datetime


class OperatorWebhookCreated(OperatorWebhook):
    signing_secret: str = Field(description="whsec_…: verify the events' webhook-signature")


class OperatorEventFilter(Pagination):
    type: OperatorEventType | None = None
    status: Literal["queued", "delivering", "delivered", "failed"] | None = None


class OperatorEventAttempt(ApiModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    response_status: int | None
    response_body: str | None
    error: str | None


class OperatorEvent(ApiModel):
    id: UUID = Field(description="sent as webhook-id")
    type: OperatorEventType
    created_at: datetime
    status: Literal["queued", "delivering", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failure_reason: str | None
    body: dict[str, Any] = Field(description="what is sent: {type, timestamp, data}")
    attempt_log: list[OperatorEventAttempt]


class OperatorEventPage(ApiModel):
    items: list[OperatorEvent]
    offset: int
    limit: int
    total: int
