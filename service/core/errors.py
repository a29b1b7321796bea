"""Domain errors. Each class is one line: its docstring is the default detail, its status the
HTTP status the API answers with (RFC 9457 problem+json, built in ``service.api.problems``)."""

from __future__ import annotations

from typing import ClassVar


class Problem(Exception):
    """Something went wrong."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self, detail: str | None = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        self.detail = detail or (self.__doc__ or "").strip()
        self.errors = errors
        super().__init__(self.detail)

    @classmethod
    def slug(cls) -> str:
        return cls.__name__


class BadRequest(Problem):
    """The request is invalid."""

    status, title = 400, "Bad Request"


class ValidationFailed(BadRequest):
    """The request failed validation."""


class Unauthorized(Problem):
    """A valid bearer token is required."""

    status, title = 401, "Unauthorized"


class Forbidden(Problem):
    """The token does not allow this."""

    status, title = 403, "Forbidden"


class NotFound(Problem):
    """Not found."""

    status, title = 404, "Not Found"


class PartnerNotFound(NotFound):
    """partner not found"""


class CallbackNotFound(NotFound):
    """callback not found"""


class NotificationNotFound(NotFound):
    """notification not found"""


class Conflict(Problem):
    """The request conflicts with the current state."""

    status, title = 409, "Conflict"


class PartnerExists(Conflict):
    """a partner with this id already exists"""


class CallbackDisabled(Conflict):
    """the callback for this notification type is disabled"""


class IdempotencyKeyReused(Conflict):
    """this Idempotency-Key was used with a different request body"""


class PayloadTooLarge(Problem):
    """The request body is too large."""

    status, title = 413, "Payload Too Large"


class UnsupportedMediaType(Problem):
    """The request body must be application/json."""

    status, title = 415, "Unsupported Media Type"


class ServiceUnavailable(Problem):
    """The database is unavailable; nothing was stored. Retry later."""

    status, title = 503, "Service Unavailable"
