"""A circuit breaker per callback, and the pause a partner's Retry-After asks for.

After ``threshold`` consecutive failed attempts (no answer, a 5xx or a 429) the circuit opens:
no attempt goes to the callback until one probe after ``first_probe_after`` seconds, and the
wait doubles (up to ``longest_probe_interval``) while probes fail. Any answer that is not such
a failure (a 2xx, or a 4xx other than 429: the endpoint is there) closes it. A 429 or 503
with Retry-After pauses the whole callback for that long (at most an hour), whatever the
circuit says. 410 Gone is not the circuit's business: it disables the callback at once.

The dispatcher that owns a callback's lane keeps its circuit here and reports it with the
attempts it records; the callback's row keeps it for the next owner and for the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dispatcher.sender import AttemptResult
from service.core.statuses import FailureReason

LONGEST_PAUSE = 3600.0  # a Retry-After is honoured up to an hour
# Failures that say nothing about the partner's endpoint: the attempt never reached it.
_NOT_REACHED = frozenset(
    {FailureReason.BLOCKED_ADDRESS, FailureReason.INTERNAL_ERROR, FailureReason.AUTH_FAILED}
)


class Outcome(Enum):
    FAILED = "failed"  # no answer, a 5xx or a 429: counts towards opening the circuit
    ANSWERED = "answered"  # the endpoint answered otherwise: it is there
    NOT_REACHED = "not_reached"  # the attempt never reached the endpoint


def outcome_of(result: AttemptResult) -> Outcome:
    if result.status is None:
        return Outcome.NOT_REACHED if result.failure in _NOT_REACHED else Outcome.FAILED
    if result.status >= 500 or result.status == 429:
        return Outcome.FAILED
    return Outcome.ANSWERED


def describe(result: AttemptResult) -> str:
    """The failure as the attempt log says it, in one short line."""
    if result.error:
        return result.error[:200]
    return f"HTTP {result.status}"


@dataclass(frozen=True)
class CircuitRules:
    threshold: int  # CALLBACKHUB_CIRCUIT_FAILURES
    first_probe_after: float  # CALLBACKHUB_CIRCUIT_PROBE_INTERVAL
    longest_probe_interval: float  # CALLBACKHUB_CIRCUIT_PROBE_MAX_INTERVAL


@dataclass(frozen=True)
class Health:
    """What the callback's row records (times as seconds from now)."""

    failures: int
    probe_in: float | None  # None: the circuit is closed
    probe_interval: float | None
    paused_for: float | None
    last_error: str | None


@dataclass
class Circuit:
    rules: CircuitRules
    failures: int = 0
    open: bool = False
    probe_interval: float = 0.0  # an open circuit's wait after its next failed probe
    next_probe_at: float = 0.0  # time.monotonic()
    paused_until: float = 0.0
    probe: str | None = None  # the notification id of the probe under way
    last_error: str | None = None
    version: int = 0  # counts changes; the dispatcher records the ones it has not yet
    recorded: int = 0

    @classmethod
    def restored(
        cls,
        rules: CircuitRules,
        failures: int,
        open_: bool,
        probe_interval: float | None,
        last_error: str | None,
    ) -> Circuit:
        """The circuit as the callback's row left it (a claim only takes on a callback whose
        probe, if it has one, is due)."""
        return cls(
            rules,
            failures=failures,
            open=open_,
            probe_interval=probe_interval or rules.first_probe_after,
            last_error=last_error,
        )

    @property
    def unrecorded(self) -> bool:
        return self.version != self.recorded

    def wait(self, now: float) -> float | None:
        """0: a request may start now; seconds: only time holds it back (a pause, the next
        probe); None: not until the probe under way has its answer."""
        wait = max(self.paused_until, self.next_probe_at if self.open else 0.0) - now
        if wait > 0:
            return wait
        if self.open and self.probe is not None:
            return None
        return 0.0

    def blocked(self, now: float) -> bool:
        """Whether the lane should hold nothing: paused, or open (a probe is claimed alone)."""
        return self.open or self.paused_until > now

    def wants_probe(self, now: float) -> bool:
        return self.open and self.probe is None and self.wait(now) == 0.0

    def started(self, notification_id: str) -> None:
        if self.open and self.probe is None:
            self.probe = notification_id

    def record(self, result: AttemptResult, now: float) -> None:
        was_probe = self.probe == result.delivery.notification_id
        if was_probe:
            self.probe = None
        outcome = outcome_of(result)
        if outcome is Outcome.FAILED:
            self._failed(result, now, was_probe)
        elif outcome is Outcome.ANSWERED and (self.failures or self.open):
            self.failures, self.open, self.probe = 0, False, None
            self.probe_interval = self.rules.first_probe_after
            self.version += 1
        if result.retry_after is not None:
            self.paused_until = max(self.paused_until, now + min(result.retry_after, LONGEST_PAUSE))
            self.version += 1

    def _failed(self, result: AttemptResult, now: float, was_probe: bool) -> None:
        self.failures += 1
        self.last_error = describe(result)
        self.version += 1
        if self.open:
            if was_probe:  # another failed probe: wait twice as long for the next
                self._next_probe(now)
        elif self.failures >= self.rules.threshold:
            self.open = True
            self.probe_interval = self.rules.first_probe_after
            self._next_probe(now)

    def _next_probe(self, now: float) -> None:
        self.next_probe_at = now + self.probe_interval
        self.probe_interval = min(2 * self.probe_interval, self.rules.longest_probe_interval)

    def health(self, now: float) -> Health:
        return Health(
            failures=self.failures,
            probe_in=max(0.0, self.next_probe_at - now) if self.open else None,
            probe_interval=self.probe_interval if self.open else None,
            paused_for=self.paused_until - now if self.paused_until > now else None,
            last_error=self.last_error,
        )
