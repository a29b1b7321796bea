"""The 24-hour chart on the Callbacks page: an SVG drawn on the server, one stacked bar per hour
(delivered at the bottom, failed on top), so a person sees at a glance when an endpoint broke."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.core.delivery_stats import HourOutcomes

WIDTH, HEIGHT, SLOT, BAR = 720, 140, 30, 22


@dataclass(frozen=True)
class Bar:
    label: str
    x: int
    delivered: int
    failed: int
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float


@dataclass(frozen=True)
class Tick:
    x: int
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[Tick]
    total_delivered: int
    total_failed: int
    peak: int
    width: int = WIDTH
    height: int = HEIGHT
    bar_width: int = BAR

    @property
    def summary(self) -> str:
        return (
            f"Last 24 hours: {self.total_delivered} delivered, {self.total_failed} failed; "
            f"at most {self.peak} in one hour"
        )


def hourly_chart(hours: Sequence[HourOutcomes]) -> Chart:
    peak = max((h.delivered + h.failed for h in hours), default=0)
    scale = HEIGHT / max(peak, 1)
    bars = [_bar(index, hour, scale) for index, hour in enumerate(hours)]
    ticks = [
        Tick(index * SLOT, hour.hour.strftime("%H:00"))
        for index, hour in enumerate(hours)
        if index % 6 == 0
    ]
    delivered = sum(h.delivered for h in hours)
    failed = sum(h.failed for h in hours)
    return Chart(bars, ticks, delivered, failed, peak)


def _bar(index: int, hour: HourOutcomes, scale: float) -> Bar:
    delivered_height = round(hour.delivered * scale, 1)
    failed_height = round(hour.failed * scale, 1)
    delivered_y = round(HEIGHT - delivered_height, 1)
    return Bar(
        label=hour.hour.strftime("%Y-%m-%d %H:00 UTC"),
        x=index * SLOT + (SLOT - BAR) // 2,
        delivered=hour.delivered,
        failed=hour.failed,
        delivered_y=delivered_y,
        delivered_height=delivered_height,
        failed_y=round(delivered_y - failed_height, 1),
        failed_height=failed_height,
    )
