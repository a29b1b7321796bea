"""What the SQL write functions report they changed, for the log and the operational events.

``finish_attempts_v4`` and ``disable_callbacks_v2`` return one row per change anyone may care
about; this module turns the rows into ``Change`` records and logs them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger("callbackhub.changes")


class ChangeKind(StrEnum):
    NOTIFICATION_FAILED = "notification_failed"  # failed for good (reason: a FailureReason)
    NOTIFICATION_RECOVERED = "notification_recovered"  # delivered after failed attempts
    SUCCESSOR_RELEASED = "successor_released"  # the next of its subject may be sent now
    CALLBACK_DISABLED = "callback_disabled"  # reason: a DisabledReason
    CALLBACK_RECOVERED = "callback_recovered"  # a success after a run of failures
    # Its failed attempts reached CALLBACKHUB_FAILING_AFTER (reported once per notification).
    NOTIFICATION_FAILING = "notification_failing"
    FAILING_NOTIFICATION_DELIVERED = "failing_notification_delivered"  # and then delivered
    CIRCUIT_OPENED = "circuit_opened"  # the callback's circuit breaker opened
    CIRCUIT_CLOSED = "circuit_closed"  # and closed again after a successful probe
    OPERATOR_EVENT = "operator_event"  # an operational event was recorded (reason: its type)


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    callback_id: int | None
    notification_id: uuid.UUID | None = None
    reason: str | None = None


def changes_from(rows: Iterable[Mapping[str, Any]]) -> list[Change]:
    return [
        Change(ChangeKind(row["change"]), row["callback_id"], row["notification_id"], row["reason"])
        for row in rows
    ]


# Worth a person's attention; the others are routine and logged at debug level.
_NOTEWORTHY = frozenset(
    {ChangeKind.CALLBACK_DISABLED, ChangeKind.NOTIFICATION_FAILED, ChangeKind.CIRCUIT_OPENED}
)


def log_changes(changes: Iterable[Change]) -> None:
    for change in changes:
        if change.kind is ChangeKind.OPERATOR_EVENT:
            continue  # counted in the metrics; the change it is about is logged
        level = logging.WARNING if change.kind in _NOTEWORTHY else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s",
                change.kind.value,
                extra={
                    "callback_id": change.callback_id,
                    "notification_id": change.notification_id,
                    "reason": change.reason,
                },
            )
