"""Where an execution whose steps run side by side is: finished steps, running ones, an ETA.

The seed's fields keep their meaning: `current_step` counts the finished steps,
`current_step_name` names the running ones (joined by ", "), and `percentage` is
the weight of the finished steps plus each running step's own fraction, never
going back. The ETA extrapolates the percentage's pace so far (the time to go
at the rate the weighted work has been done); there is none before a step has
moved the percentage, nor once the execution is finished.
"""

from __future__ import annotations

import time

from ..model.events import ProgressSnapshot, StepState

MIN_SHARE_FOR_ETA = 1.0  # percent done before the pace says anything about the rest


class ParallelEstimate:
    """The clocks and shares of one execution's concurrently running steps."""

    __slots__ = (
        "finished",
        "names",
        "percentage",
        "running",
        "scale",
        "started_clock",
        "step_clocks",
        "step_count",
        "weight_done",
        "weights",
    )

    def __init__(self, steps: list[StepState]) -> None:
        self.weights = [s.weight for s in steps]
        self.names = [s.name for s in steps]
        self.step_count = len(steps)
        self.scale = 100.0 / (sum(self.weights) or 1.0)
        self.running: dict[int, float] = {}  # index → its own fraction done
        self.step_clocks: dict[int, float] = {}
        self.finished = 0
        self.weight_done = 0.0
        self.percentage = 0.0
        self.started_clock = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the execution started."""
        return time.perf_counter() - self.started_clock

    def step_elapsed(self, index: int | None = None) -> float:
        """Seconds since step `index` started."""
        began = self.started_clock if index is None else self.step_clocks.get(index)
        return time.perf_counter() - (began or self.started_clock)

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
        step_stops: bool = False,
    ) -> ProgressSnapshot:
        """The progress after step `index` began, moved, completed or stopped."""
        now = time.perf_counter()
        if step_begins:
            self.step_clocks[index] = now
        if step_completes:
            self.running.pop(index, None)
            self.weight_done += self.weights[index]
            self.finished += 1
        elif step_stops:
            self.running.pop(index, None)
        else:
            self.running[index] = fraction
        weights = self.weights
        share = self.weight_done + sum(weights[i] * f for i, f in self.running.items())
        percentage = min(100.0, int(share * self.scale * 100.0 + 0.5) / 100.0)
        percentage = self.percentage = max(percentage, self.percentage)
        elapsed = now - self.started_clock
        eta = None
        if MIN_SHARE_FOR_ETA <= percentage < 100.0:
            eta = elapsed * (100.0 - percentage) / percentage
        step_seconds = now - self.step_clocks.get(index, self.started_clock)
        running = sorted(self.running)
        return ProgressSnapshot(
            current_step=min(self.finished, self.step_count - 1),
            total_steps=self.step_count,
            percentage=percentage,
            current_step_name=", ".join(self.names[i] for i in running) or self.names[index],
            items_done=done,
            items_total=total,
            message=message,
            elapsed_seconds=elapsed,
            rate=done / step_seconds if done and step_seconds > 0 else None,
            eta_seconds=eta,
        )
