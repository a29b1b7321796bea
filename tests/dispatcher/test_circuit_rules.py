"""The circuit breaker's rules, on their own: what opens it, what closes it, when it probes, and
the pause a Retry-After asks for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.circuit import LONGEST_PAUSE, Circuit, CircuitRules, Outcome, outcome_of
from dispatcher.sender import AttemptResult, Delivery
from service.core.statuses import FailureReason

RULES = CircuitRules(threshold=3, first_probe_after=30.0, longest_probe_interval=600.0)


def delivery(notification_id: str = "n") -> Delivery:
    return Delivery(notification_id, 1, 1, "https://x", b"{}", ("s",), None, 1, 1, 1, False, "s")


def result(
    status: int | None = None,
    failure: FailureReason | None = None,
    retry_after: float | None = None,
    notification_id: str = "n",
) -> AttemptResult:
    error = None if status is not None else "connection failed: refused"
    return AttemptResult(
        delivery(notification_id),
        datetime.now(UTC),
        1,
        status=status,
        error=error,
        failure=failure or (None if status is not None else FailureReason.CONNECTION_FAILED),
        retry_after=retry_after,
    )


@pytest.mark.parametrize(
    ("attempt", "outcome"),
    [
        (result(500), Outcome.FAILED),
        (result(503), Outcome.FAILED),
        (result(429), Outcome.FAILED),
        (result(None), Outcome.FAILED),
        (result(None, FailureReason.TIMEOUT), Outcome.FAILED),
        (result(200), Outcome.ANSWERED),
        (result(400), Outcome.ANSWERED),
        (result(None, FailureReason.BLOCKED_ADDRESS), Outcome.NOT_REACHED),
        (result(None, FailureReason.AUTH_FAILED), Outcome.NOT_REACHED),
    ],
)
def test_what_counts_against_the_endpoint(attempt: AttemptResult, outcome: Outcome) -> None:
    assert outcome_of(attempt) is outcome


def test_it_opens_after_the_threshold_and_probes_with_doubling_waits() -> None:
    circuit = Circuit(RULES)
    for now in (0.0, 0.1):
        circuit.record(result(503), now)
        assert not circuit.open and circuit.wait(now) == 0.0
    circuit.record(result(None), 0.2)
    assert circuit.open and circuit.failures == 3
    assert circuit.wait(0.2) == pytest.approx(30.0)
    assert circuit.health(0.2).probe_in == pytest.approx(30.0)

    probe_at, waits = 30.2, []
    for _ in range(7):
        assert circuit.wants_probe(probe_at)
        circuit.started("probe")
        assert circuit.wait(probe_at) is None  # one probe at a time
        circuit.record(result(503, notification_id="probe"), probe_at)
        wait = circuit.wait(probe_at)
        assert wait is not None
        waits.append(round(wait))
        probe_at += wait
    assert waits == [60, 120, 240, 480, 600, 600, 600]


def test_a_straggler_failing_while_open_does_not_push_the_probe_back() -> None:
    circuit = Circuit(RULES, failures=2)
    circuit.record(result(503), 0.0)
    circuit.record(result(503, notification_id="straggler"), 1.0)
    assert circuit.wait(1.0) == pytest.approx(29.0)


@pytest.mark.parametrize("status", [200, 404])
def test_an_answer_closes_it(status: int) -> None:
    circuit = Circuit(RULES, failures=2)
    circuit.record(result(503), 0.0)
    circuit.started("probe")
    circuit.record(result(status, notification_id="probe"), 31.0)
    assert not circuit.open and circuit.failures == 0 and circuit.wait(31.0) == 0.0
    assert circuit.health(31.0).probe_in is None


def test_an_attempt_that_never_reached_the_endpoint_changes_nothing() -> None:
    circuit = Circuit(RULES, failures=2)
    circuit.record(result(None, FailureReason.BLOCKED_ADDRESS), 0.0)
    assert circuit.failures == 2 and not circuit.open and not circuit.unrecorded


def test_retry_after_pauses_for_as_long_as_asked_up_to_an_hour() -> None:
    circuit = Circuit(RULES)
    circuit.record(result(429, retry_after=5.0), 10.0)
    assert circuit.blocked(12.0) and circuit.wait(12.0) == pytest.approx(3.0)
    assert not circuit.blocked(15.0)
    circuit.record(result(503, retry_after=10 * 24 * 3600.0), 20.0)
    assert circuit.health(20.0).paused_for == pytest.approx(LONGEST_PAUSE)


def test_each_change_is_to_be_recorded_once() -> None:
    circuit = Circuit(RULES)
    assert not circuit.unrecorded
    circuit.record(result(503), 0.0)
    assert circuit.unrecorded
    circuit.recorded = circuit.version
    circuit.record(result(200), 1.0)  # closes the failure run: recorded again
    assert circuit.unrecorded
    circuit.recorded = circuit.version
    circuit.record(result(200), 2.0)  # healthy and still healthy: nothing to write
    assert not circuit.unrecorded
