"""Lanes: one per callback this dispatcher process delivers to, and the order they are served in.

A dispatcher process that owns a callback (``callback_owners``, leased like a delivery) is the
only one sending to it, so the callback's limits are plain local counters that still hold
across every dispatcher together:

- ``max_in_flight`` requests at once (the callback's ``maxInFlight``, default
  ``CALLBACKHUB_MAX_PER_CALLBACK``);
- at most one request per ``1 / max_per_second`` seconds (``maxPerSecond``): evenly spaced, so
  any one-second window sees at most ``maxPerSecond + 1``;
- its circuit breaker and Retry-After pause (``dispatcher/circuit.py``): while either holds
  the lane back it holds no claimed deliveries, and an open circuit claims only its probe.

A lane claims ahead: it holds a few times its in-flight limit of claimed deliveries (more for a
lane that drains fast), so the next request starts the moment one finishes instead of after a
claim round trip. Lanes take turns (round robin) for the process's shared in-flight budget,
so a backlog at one callback never takes the others' request slots.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dispatcher.circuit import Circuit, CircuitRules
from dispatcher.sender import Delivery

CLAIM_AHEAD = 4  # deliveries held per in-flight slot, at least
MAX_AHEAD = 512  # and at most this many for one lane
# A fast lane holds this long's worth of sends: enough to cover a claim's round trip, small
# enough that turning a claim's rows into deliveries never holds the event loop for long.
AHEAD_SECONDS = 0.05


@dataclass
class Pacer:
    """Evenly spaced starts: the next one no sooner than ``interval`` after the last."""

    per_second: float
    next_at: float = 0.0  # time.monotonic()

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    def wait(self, now: float) -> float:
        """Seconds until the next start is allowed (0: now)."""
        return max(0.0, self.next_at - now)

    def started(self, now: float) -> None:
        self.next_at = max(now, self.next_at) + self.interval


@dataclass
class Lane:
    callback_id: int
    max_in_flight: int
    circuit: Circuit
    pacer: Pacer | None = None
    waiting: deque[Delivery] = field(default_factory=deque)
    in_flight: int = 0
    # Until when this process may still start a request for the callback: its ownership and
    # the leases of the waiting deliveries, less one delivery timeout (time.monotonic()).
    sendable_until: float = math.inf
    sent: int = 0  # requests started, for the lane's rate
    # Signs that due work may have come for the callback (a NOTIFY, the poll, its own
    # write-back), counted; a claim that found less than the lane asked for records the count
    # it started at, and the lane is drained until the next sign.
    signs: int = 0
    drained_at: int = -1
    rate: float = 0.0  # requests started per second, smoothed
    _rate_since: float = field(default_factory=time.monotonic)
    _rate_sent: int = 0

    @property
    def idle(self) -> bool:
        return not self.waiting and self.in_flight == 0

    @property
    def drained(self) -> bool:
        """Nothing more is claimed for it until a sign that due work may have come."""
        return self.drained_at == self.signs

    def limit(self, max_in_flight: int, max_per_second: float | None) -> None:
        """The callback's limits as last claimed (a partner may change them at any time)."""
        self.max_in_flight = max_in_flight
        if max_per_second is None:
            self.pacer = None
        elif self.pacer is None or self.pacer.per_second != max_per_second:
            self.pacer = Pacer(max_per_second, self.pacer.next_at if self.pacer else 0.0)

    def depth(self) -> int:
        """How many claimed deliveries this lane wants to hold."""
        depth = max(CLAIM_AHEAD * self.max_in_flight, int(self.rate * AHEAD_SECONDS))
        if self.pacer is not None:  # a paced lane needs at most about a second's worth
            depth = min(depth, max(1, math.ceil(self.pacer.per_second)))
        return min(depth, MAX_AHEAD)

    def want(self, now: float) -> int:
        """How many more to claim now: none while at least half the depth is still held, or
        while the callback is drained; while its circuit is open only the probe, when it is
        due."""
        if self.circuit.blocked(now):
            return 1 if self.circuit.wants_probe(now) and not self.waiting else 0
        if self.drained:
            return 0
        depth = self.depth()
        held = len(self.waiting)
        return depth - held if held <= depth // 2 else 0

    def ready_in(self, now: float) -> float | None:
        """0 when a request may start now, the seconds to wait when only the pacer holds it
        back, None when it has nothing to start or its in-flight limit is reached."""
        if not self.waiting or self.in_flight >= self.max_in_flight or now >= self.sendable_until:
            return None
        held_back = self.circuit.wait(now)
        if held_back is None:
            return None
        return max(held_back, self.pacer.wait(now) if self.pacer is not None else 0.0)

    def take(self, now: float) -> Delivery:
        self.in_flight += 1
        self.sent += 1
        if self.pacer is not None:
            self.pacer.started(now)
        delivery = self.waiting.popleft()
        self.circuit.started(delivery.notification_id)
        return delivery

    def surplus(self, now: float) -> list[Delivery]:
        """What this lane must not hold while its circuit is open or a Retry-After pauses it:
        all it waits with, except a due probe. Taken out of the lane, to be given back."""
        if not self.circuit.blocked(now):
            return []
        keep = 1 if self.circuit.wants_probe(now) else 0
        surplus = list(self.waiting)[keep:]
        for _ in surplus:
            self.waiting.pop()
        return surplus

    def measure_rate(self, now: float) -> None:
        elapsed = now - self._rate_since
        if elapsed >= 0.1:
            current = (self.sent - self._rate_sent) / elapsed
            self.rate = current if self.rate == 0 else 0.5 * self.rate + 0.5 * current
            self._rate_since, self._rate_sent = now, self.sent


@dataclass
class Lanes:
    """The lanes of this process, and the turns of those that may start a request.

    A lane is in the turns while it may have a request to start; serving one request puts it
    back at the end, so lanes with work alternate (round robin) and a lane that cannot start
    (nothing waiting, its in-flight limit reached) leaves the turns until that changes.
    """

    rules: CircuitRules
    by_callback: dict[int, Lane] = field(default_factory=dict)
    _turns: deque[Lane] = field(default_factory=deque)
    _in_turns: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[Lane]:
        return iter(list(self.by_callback.values()))

    def get(self, callback_id: int) -> Lane | None:
        return self.by_callback.get(callback_id)

    def open(self, callback_id: int, max_in_flight: int, sendable_until: float) -> Lane:
        lane = self.by_callback.get(callback_id)
        if lane is None:
            circuit = Circuit(self.rules)
            lane = Lane(callback_id, max_in_flight, circuit, sendable_until=sendable_until)
            self.by_callback[callback_id] = lane
        return lane

    def among(self, callback_ids: Iterable[int]) -> list[Lane]:
        """The lanes of those callbacks that this process has."""
        return [lane for lane in map(self.by_callback.get, callback_ids) if lane is not None]

    def close(self, callback_id: int) -> Lane | None:
        return self.by_callback.pop(callback_id, None)

    def waiting(self) -> int:
        return sum(len(lane.waiting) for lane in self.by_callback.values())

    def wake(self, lane: Lane) -> None:
        """``lane`` may be able to start a request (work arrived, a slot freed, time passed)."""
        if lane.callback_id not in self._in_turns and lane.waiting:
            self._turns.append(lane)
            self._in_turns.add(lane.callback_id)

    def next_ready(self, now: float) -> tuple[Lane | None, list[tuple[Lane, float]]]:
        """The next lane in turn that may start a request now (None: none may), and the paced
        lanes that left the turns with how long until they may start."""
        paced: list[tuple[Lane, float]] = []
        while self._turns:
            lane = self._turns.popleft()
            self._in_turns.discard(lane.callback_id)
            if self.by_callback.get(lane.callback_id) is not lane:
                continue  # closed meanwhile
            wait = lane.ready_in(now)
            if wait == 0.0:
                return lane, paced
            if wait is not None:
                paced.append((lane, wait))
        return None, paced
