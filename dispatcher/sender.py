"""One attempt: POST the notification to the partner, signed, and describe what happened."""

from __future__ import annotations

import dataclasses
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from opentelemetry.trace import Span, SpanKind, StatusCode

from dispatcher.oauth2 import ClientCredentials, TokenCache, TokenEndpointFailed
from dispatcher.retry import RETRY_AFTER_STATUSES, parse_retry_after
from dispatcher.tls import TlsContexts
from service.core import tracing
from service.core.delivery_options import Credentials, DeliveryOptions, open_credentials
from service.core.egress import blocked_cause
from service.core.encryption import Keyring
from service.core.notification_types import type_name
from service.core.signing import signature_header
from service.core.statuses import FailureReason
from service.core.stored_secrets import OPERATOR_WEBHOOK_ROW, callback_row
from service.core.tracing import TraceContext

RESPONSE_BODY_LIMIT = 4096
OPENED_LIMIT = 4096  # callbacks whose credentials are kept opened
NO_CREDENTIALS = Credentials()  # a callback without custom headers or auth (never changed)


# Delivery and AttemptResult are made once per attempt and never changed after: not frozen only
# because a frozen dataclass's __init__ sets each field through object.__setattr__, which cost
# the dispatcher more per attempt (about 3 µs for Delivery's 20 fields) than signing it.


@dataclass(slots=True)
class Delivery:
    """A claimed delivery: everything needed to make one attempt."""

    notification_id: str
    callback_id: int
    notification_type: int
    url: str
    payload: bytes
    # As stored: sealed (service.core.encryption); opened by the sender for each attempt.
    sealed_secrets: tuple[str, ...]
    sealed_credentials: str | None  # custom headers and Authorization (delivery_options)
    attempt: int
    round_attempt: int
    sequence: int
    ordered: bool
    subject: str
    partner_id: str = ""
    accepted_at: datetime | None = None
    trace_context: TraceContext | None = None  # read only while tracing is on
    options: DeliveryOptions = field(default_factory=DeliveryOptions)  # auth, OAuth2 client
    ssl_context: ssl.SSLContext | None = None  # a private CA or a client certificate
    # An operational event's type (dispatcher/operator_delivery.py): signed with the operator
    # webhook's secret, without a partner's headers. None: a partner's notification.
    operator_event: str | None = None


@dataclass(slots=True)
class AttemptResult:
    delivery: Delivery
    started_at: datetime
    duration_ms: int
    status: int | None = None
    body: str | None = None
    error: str | None = None
    retry_after: float | None = None
    # Why an attempt without an HTTP answer failed (an answer's status says it otherwise).
    failure: FailureReason | None = None
    # The webhook-signature header it carried (None when it was never sent).
    signature: str | None = None

    @property
    def blocked(self) -> bool:
        return self.failure is FailureReason.BLOCKED_ADDRESS

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


def request_headers(
    delivery: Delivery, user_agent: str, timestamp: int, secrets: tuple[str, ...]
) -> dict[str, str]:
    if delivery.operator_event is not None:
        return {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "webhook-id": delivery.notification_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                secrets, delivery.notification_id, timestamp, delivery.payload
            ),
            "callbackhub-event-type": delivery.operator_event,
        }
    return {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "notification-type-id": str(delivery.notification_type),
        "webhook-id": delivery.notification_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            secrets, delivery.notification_id, timestamp, delivery.payload
        ),
        "webhook-sequence": str(delivery.sequence),
    }


class Sender:
    """Makes attempts through one shared client session (keep-alive, connection pool)."""

    def __init__(
        self, session: aiohttp.ClientSession, timeout: float, user_agent: str, keyring: Keyring
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._keyring = keyring
        self._tokens = TokenCache(session, timeout)
        self._tls = TlsContexts()
        self._opened: dict[tuple[str | None, str, int], Credentials] = {}

    def _secrets(self, delivery: Delivery) -> tuple[str, ...]:
        """The signing secrets in clear (the keyring keeps each opened value). A secret no key
        opens raises ``SecretUnreadable``: the worker records it as an internal error, like any
        failure to make the attempt."""
        row = callback_row(delivery.partner_id, delivery.notification_type)
        if delivery.operator_event is not None:
            row = OPERATOR_WEBHOOK_ROW
        return tuple(self._keyring.open(sealed, row) for sealed in delivery.sealed_secrets)

    def _credentials(self, delivery: Delivery) -> Credentials:
        """The callback's credentials, opened and parsed once per stored value (a sealed
        value is unique: a change of credentials seals anew)."""
        key = (delivery.sealed_credentials, delivery.partner_id, delivery.notification_type)
        credentials = self._opened.get(key)
        if credentials is None:
            credentials = open_credentials(
                self._keyring,
                delivery.sealed_credentials,
                delivery.partner_id,
                delivery.notification_type,
            )
            if len(self._opened) >= OPENED_LIMIT:
                self._opened.clear()
            self._opened[key] = credentials
        return credentials

    async def attempt(self, delivery: Delivery) -> AttemptResult:
        if tracing.enabled():
            return await self._traced_attempt(delivery)
        return await self._attempt(delivery, {})

    async def _traced_attempt(self, delivery: Delivery) -> AttemptResult:
        """The attempt as a span of the notification's trace; the partner receives its
        ``traceparent``, so a partner who traces joins the same trace."""
        with tracing.tracer().start_as_current_span(
            f"deliver {type_name(delivery.notification_type)}",
            context=tracing.parent_of(delivery.trace_context),
            kind=SpanKind.CLIENT,
            attributes={
                "callbackhub.partner_id": delivery.partner_id,
                "callbackhub.notification_type": delivery.notification_type,
                "callbackhub.notification_id": delivery.notification_id,
                "callbackhub.attempt": delivery.attempt,
            },
        ) as span:
            result = await self._attempt(delivery, tracing.span_headers(span))
            _describe_in(span, result)
            return result

    async def _attempt(self, delivery: Delivery, extra_headers: dict[str, str]) -> AttemptResult:
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        timestamp = int(started_at.timestamp())
        headers = request_headers(delivery, self._user_agent, timestamp, self._secrets(delivery))
        credentials = NO_CREDENTIALS
        if delivery.sealed_credentials is not None:  # the callback's own headers, at one place
            credentials = self._credentials(delivery)
            headers.update(credentials.request_headers())
        headers.update(extra_headers)
        delivery = self._with_tls(delivery, credentials)
        if delivery.options.oauth2:
            return await self._send_with_token(delivery, headers, credentials, started_at, clock)
        return await self._send(delivery, headers, started_at, clock)

    def _with_tls(self, delivery: Delivery, credentials: Credentials) -> Delivery:
        """The delivery with the TLS context its options ask for (a private CA, a client
        certificate), or as it is."""
        options = delivery.options
        if options.tls is None and not options.mtls:
            return delivery
        ca = options.tls["caCertificate"] if options.tls else None
        client = None
        if options.mtls and options.auth is not None and credentials.private_key is not None:
            client = (options.auth["certificate"], credentials.private_key)
        return dataclasses.replace(delivery, ssl_context=self._tls.context(ca, client))

    async def _send_with_token(
        self,
        delivery: Delivery,
        headers: dict[str, str],
        credentials: Credentials,
        started_at: datetime,
        clock: float,
    ) -> AttemptResult:
        """With an OAuth2 token; a 401 from the partner gets one fresh token and one retry."""
        client = _client_of(delivery.options, credentials)
        try:
            token = await self._tokens.token(client)
            result = await self._send(delivery, headers | _bearer(token), started_at, clock)
            if result.status == 401:
                token = await self._tokens.token(client, refresh_from=token)
                result = await self._send(delivery, headers | _bearer(token), started_at, clock)
        except TokenEndpointFailed as error:
            return _failed(
                delivery, started_at, clock, f"auth_failed: {error}", FailureReason.AUTH_FAILED
            )
        return result

    async def _send(
        self, delivery: Delivery, headers: dict[str, str], started_at: datetime, clock: float
    ) -> AttemptResult:
        """One POST; the result carries the signature it sent (none when the URL guard
        refused it: nothing left callbackhub)."""
        signature = headers["webhook-signature"]
        try:
            status, body, retry_after = await self._post(delivery, headers)
        except TimeoutError:
            result = _failed(delivery, started_at, clock, "timeout", FailureReason.TIMEOUT)
            return dataclasses.replace(result, signature=signature)
        except (aiohttp.ClientError, OSError) as error:
            result = _unanswered(delivery, started_at, clock, error)
            return result if result.blocked else dataclasses.replace(result, signature=signature)
        return AttemptResult(
            delivery,
            started_at,
            _elapsed_ms(clock),
            status=status,
            body=body,
            retry_after=retry_after,
            signature=signature,
        )

    async def _post(
        self, delivery: Delivery, headers: dict[str, str]
    ) -> tuple[int, str, float | None]:
        async with self._session.post(
            delivery.url,
            data=delivery.payload,
            headers=headers,
            allow_redirects=False,
            timeout=self._timeout,
            ssl=delivery.ssl_context if delivery.ssl_context is not None else True,
        ) as response:
            body = await _read_capped(response)
            retry_after = None
            if response.status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return response.status, body, retry_after


async def _read_capped(response: aiohttp.ClientResponse) -> str:
    """The first 4 KiB of the body; the rest is never buffered (the connection is closed).

    ``read(n)`` answers with whatever has arrived, so read until 4 KiB or the end: a partner
    that trickles its body forever runs into the timeout instead of counting as an answer.
    """
    length = response.content_length
    if length is not None and length <= RESPONSE_BODY_LIMIT:  # most answers: one read
        return (await response.read()).decode("utf-8", "replace")
    body = b""
    while len(body) < RESPONSE_BODY_LIMIT and not response.content.at_eof():
        body += await response.content.read(RESPONSE_BODY_LIMIT - len(body))
    if not response.content.at_eof():
        response.close()
    return body.decode("utf-8", "replace")


def _describe(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return f"egress proxy unreachable: {error.os_error.strerror or error.os_error}"
    if isinstance(error, aiohttp.ClientHttpProxyError):
        return f"egress proxy refused the request: {error.status}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connection failed: {error.os_error.strerror or error.os_error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return f"{type(error).__name__}: {error}"[:500]


def _elapsed_ms(clock: float) -> int:
    return int((time.monotonic() - clock) * 1000)


def _failed(
    delivery: Delivery,
    started_at: datetime,
    clock: float,
    error: str,
    failure: FailureReason = FailureReason.CONNECTION_FAILED,
) -> AttemptResult:
    return AttemptResult(delivery, started_at, _elapsed_ms(clock), error=error, failure=failure)


def internal_error(delivery: Delivery, started_at: datetime, error: BaseException) -> AttemptResult:
    """An attempt that callbackhub itself failed to make (a bug, a malformed stored secret):
    recorded and retried like any failure. The log carries the traceback; the attempt log only
    the exception's type, since its message may quote what it failed on."""
    elapsed = int((datetime.now(UTC) - started_at).total_seconds() * 1000)
    return AttemptResult(
        delivery,
        started_at,
        max(elapsed, 0),
        error=f"internal_error: {type(error).__name__}",
        failure=FailureReason.INTERNAL_ERROR,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _client_of(options: DeliveryOptions, credentials: Credentials) -> ClientCredentials:
    auth = options.auth or {}
    return ClientCredentials(
        token_url=auth["tokenUrl"],
        client_id=auth["clientId"],
        client_secret=credentials.client_secret or "",
        scope=auth.get("scope"),
        audience=auth.get("audience"),
        client_auth="post" if auth.get("clientAuth") == "post" else "basic",
    )


def _describe_in(span: Span, result: AttemptResult) -> None:
    """What the attempt span says about the attempt: the answer, the outcome, why it failed."""
    if result.status is not None:
        span.set_attribute("http.response.status_code", result.status)
    span.set_attribute("callbackhub.outcome", "succeeded" if result.succeeded else "failed")
    if not result.succeeded:
        reason = result.failure or FailureReason.HTTP_ERROR
        span.set_attribute("callbackhub.failure_reason", reason.value)
        span.set_status(StatusCode.ERROR, (result.error or f"HTTP {result.status}")[:200])


def _unanswered(
    delivery: Delivery, started_at: datetime, clock: float, error: aiohttp.ClientError | OSError
) -> AttemptResult:
    """No HTTP answer: the URL guard refused the destination, or the connection failed."""
    refusal = blocked_cause(error)
    if refusal is not None:
        message = f"blocked_address: {refusal}"[:500]
        return _failed(delivery, started_at, clock, message, FailureReason.BLOCKED_ADDRESS)
    if isinstance(error, aiohttp.ClientError):
        return _failed(delivery, started_at, clock, _describe(error))
    return _failed(delivery, started_at, clock, f"network error: {error.strerror or error}")


__all__ = ["AttemptResult", "Delivery", "Sender", "internal_error"]
