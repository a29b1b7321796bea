"""The closed sets of the delivery domain: statuses and reasons, shared with the SQL.

The SQL's check constraints list the same values (``sql/migrations/0006``); a test compares
them, so adding a value means adding it in both places.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where a notification's delivery stands."""

    QUEUED = "queued"  # waiting for its next attempt (or behind an earlier one of its subject)
    DELIVERING = "delivering"  # leased by a dispatcher, an attempt under way
    DELIVERED = "delivered"  # the partner answered 2xx
    FAILED = "failed"  # no more attempts; redelivery can queue it again
    CANCELLED = "cancelled"  # its callback or partner was deleted


PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.DELIVERING)


class FailureReason(StrEnum):
    """Why a delivery failed (or was cancelled); the attempt log has each attempt's details."""

    HTTP_ERROR = "http_error"  # the last attempt was answered with a status other than 2xx
    TIMEOUT = "timeout"  # the last attempt had no answer within the delivery timeout
    CONNECTION_FAILED = "connection_failed"  # the last attempt could not connect or was cut
    BLOCKED_ADDRESS = "blocked_address"  # the URL guard refused the destination
    GONE = "gone"  # the partner answered 410 Gone: the callback is disabled
    INTERNAL_ERROR = "internal_error"  # callbackhub itself failed to make the attempt
    AUTH_FAILED = "auth_failed"  # the callback's OAuth2 token endpoint gave no token
    CALLBACK_DISABLED = "callback_disabled"
    CALLBACK_DELETED = "callback_deleted"
    PARTNER_DELETED = "partner_deleted"


class DisabledReason(StrEnum):
    """Why a callback no longer receives notifications."""

    DISABLED_BY_USER = "disabled_by_user"  # Callback Update with enabled: false
    GONE = "gone"  # the partner answered 410 Gone
    FAILING = "failing"  # every attempt failed for CALLBACKHUB_DISABLE_AFTER seconds
