"""The bench's one table, and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Row:
    """One figure. ``ceiling`` is what it is measured against (``ratio = value / ceiling``);
    ``target`` is a minimum ratio (``at_least``) or a maximum value (``at_most``)."""

    figure: str
    value: float | None
    unit: str
    ceiling: float | None = None
    ceiling_name: str = ""
    at_least: float | None = None  # ratio
    at_most: float | None = None  # value

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.ceiling:
            return None
        return self.value / self.ceiling

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f">= {self.at_least:.2f} x {self.ceiling_name}"
        if self.at_most is not None:
            return f"<= {_number(self.at_most)} {self.unit}"
        return ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return False if (self.at_least or self.at_most) is not None else None
        if self.at_least is not None:
            return self.ratio is not None and self.ratio >= self.at_least
        if self.at_most is not None:
            return self.value <= self.at_most
        return None


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cells(row: Row) -> list[str]:
    met = {True: "yes", False: "NO", None: ""}[row.met]
    ceiling = f"{_number(row.ceiling)} ({row.ceiling_name})" if row.ceiling else ""
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
    return [row.figure, f"{_number(row.value)} {row.unit}", ceiling, ratio, row.target, met]


HEADER = ["figure", "value", "ceiling", "ratio", "target", "met?"]


def table(rows: list[Row]) -> str:
    """A Markdown table (readable in a terminal, pasteable into an issue)."""
    lines = [HEADER, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(HEADER), rule, *(render(line) for line in lines[1:])])


def write_json(path: Path, rows: list[Row], details: dict[str, object]) -> None:
    document = {
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rows": [
            {**asdict(row), "ratio": row.ratio, "target": row.target, "met": row.met}
            for row in rows
        ],
        "details": details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
