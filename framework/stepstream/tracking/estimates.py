"""Where a running execution is: its weighted percentage, never going back, its rate and ETA.

The ETA blends step history with the live rate (see `history.py` for the formula).
"""

from __future__ import annotations

import time

from ..model.events import ProgressSnapshot, StepState


def step_time_left(expected: float, step_elapsed: float, fraction: float) -> float:
    """The running step's time to go: its history, blended towards its own rate as items pass."""
    if not fraction:
        return max(0.0, expected - step_elapsed)
    planned = expected * (1.0 - fraction)
    live = step_elapsed * (1.0 - fraction) / fraction
    return planned + (live - planned) * fraction


class Estimate:
    """The clocks and shares of one execution running here, turned into progress snapshots."""

    __slots__ = (
        "expected",
        "expected_after",
        "names",
        "percentage",
        "scale",
        "started_clock",
        "step_clock",
        "step_count",
        "weight_done",
        "weights",
    )

    def __init__(
        self,
        steps: list[StepState],
        expected: tuple[list[float], list[float]] | None = None,
    ) -> None:
        self.weights = [s.weight for s in steps]
        self.names = [s.name for s in steps]
        self.step_count = len(steps)
        self.scale = 100.0 / (sum(self.weights) or 1.0)
        self.weight_done = 0.0
        self.percentage = 0.0
        self.expected, self.expected_after = expected if expected is not None else (None, [])
        self.started_clock = self.step_clock = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the execution started."""
        return time.perf_counter() - self.started_clock

    def step_elapsed(self) -> float:
        """Seconds since the current step started."""
        return time.perf_counter() - self.step_clock

    def snapshot(
        self,
        index: int,
        fraction: float = 0.0,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
        *,
        step_begins: bool = False,
        step_completes: bool = False,
    ) -> ProgressSnapshot:
        """Weighted percentage, never lower than the last one, with elapsed time, rate and ETA.

        `step_begins` starts the step's own clock; `step_completes` adds its weight to
        the finished share once this snapshot is taken. This runs twice per step, so
        it does both in passing and avoids `round()` (slower than the rest combined).
        """
        now = time.perf_counter()
        if step_begins:
            self.step_clock = now
        share = (self.weight_done + self.weights[index] * fraction) * self.scale
        if step_completes:
            self.weight_done += self.weights[index]
        percentage = int(share * 100.0 + 0.5) / 100.0
        if percentage > 100.0:
            percentage = 100.0
        if percentage < self.percentage:
            percentage = self.percentage
        self.percentage = percentage
        elapsed = now - self.started_clock
        step_elapsed = now - self.step_clock
        rate = eta = None
        if done and step_elapsed > 0:
            rate = done / step_elapsed
        if percentage < 100.0:
            expected = self.expected
            if expected is not None:
                eta = self.expected_after[index] + step_time_left(
                    expected[index], step_elapsed, fraction
                )
            elif percentage > 0.0:
                eta = elapsed * (100.0 - percentage) / percentage
        return ProgressSnapshot(
            current_step=index,
            total_steps=self.step_count,
            percentage=percentage,
            current_step_name=self.names[index],
            items_done=done,
            items_total=total,
            message=message,
            elapsed_seconds=elapsed,
            rate=rate,
            eta_seconds=eta,
        )
