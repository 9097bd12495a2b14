"""Where a running execution is: its weighted percentage, never going back, its rate and ETA.

The ETA is the running step's time to go plus the steps after it:

- the running step: with a known total, its items to go at its own rate (an
  exponentially weighted average of recent rates, as tqdm smooths, so a step
  whose items speed up is followed); with history, its median duration scaled by
  the execution's pace, trusted less as its own items pass (fully live from a
  tenth of the step on);
- the steps after it: their history medians scaled by the pace; without
  history, the seconds per unit of weight seen so far (finished steps, or the
  running step's own projection);
- the pace: how long the work done so far took against what history expected
  of it, so history from runs with other inputs (ten items, then a thousand)
  still gives the right order of magnitude.

With neither a rate nor history there is no ETA (None), and a finished
execution has none either.
"""

from __future__ import annotations

import time

from ..model.events import ProgressSnapshot, StepState

SMOOTHING = 0.3  # weight of the newest item's rate in the running average (tqdm's default)
LIVE_FROM = 0.1  # the share of a step from which its own rate is trusted over history


class Estimate:
    """The clocks and shares of one execution running here, turned into progress snapshots."""

    __slots__ = (
        "actual_done",
        "expected",
        "expected_after",
        "expected_done",
        "last_done",
        "last_tick",
        "names",
        "percentage",
        "rate",
        "scale",
        "started_clock",
        "step_clock",
        "step_count",
        "weight_after",
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
        self.weight_after = [0.0] * self.step_count
        for i in range(self.step_count - 2, -1, -1):
            self.weight_after[i] = self.weight_after[i + 1] + self.weights[i + 1]
        self.weight_done = 0.0
        self.percentage = 0.0
        self.expected, self.expected_after = expected if expected is not None else (None, [])
        self.expected_done = 0.0  # history's expectation of the finished steps
        self.actual_done = 0.0  # what the finished steps took
        self.started_clock = self.step_clock = self.last_tick = time.perf_counter()
        self.last_done = 0
        self.rate: float | None = None

    def elapsed(self) -> float:
        """Seconds since the execution started."""
        return time.perf_counter() - self.started_clock

    def step_elapsed(self, index: int | None = None) -> float:
        """Seconds since the current step started (one step runs at a time: `index` is it)."""
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
        step_stops: bool = False,
    ) -> ProgressSnapshot:
        """Weighted percentage, never lower than the last one, with elapsed time, rate and ETA.

        `step_begins` starts the step's own clock; `step_completes` counts the step as
        finished once this snapshot is taken (`step_stops`, a step that failed or was
        stopped, changes nothing here: the execution ends with it). This runs twice per
        step, so it does both in passing and avoids `round()` (slower than the rest combined).
        """
        now = time.perf_counter()
        if step_begins:
            self.step_clock = self.last_tick = now
            self.last_done = 0
            self.rate = None
        share = (self.weight_done + self.weights[index] * fraction) * self.scale
        percentage = int(share * 100.0 + 0.5) / 100.0
        if percentage > 100.0:
            percentage = 100.0
        if percentage < self.percentage:
            percentage = self.percentage
        self.percentage = percentage
        step_elapsed = now - self.step_clock
        if done:
            self._measure(now, done)
        eta = None
        if step_completes:
            self.weight_done += self.weights[index]
            self.actual_done += step_elapsed
            if self.expected is not None:
                self.expected_done += self.expected[index]
            if percentage < 100.0:
                eta = self._after(index, self._pace(index, None, 0.0), step_elapsed)
        elif percentage < 100.0:
            eta = self._eta(index, fraction if total else None, done, total, step_elapsed)
        return ProgressSnapshot(
            current_step=index,
            total_steps=self.step_count,
            percentage=percentage,
            current_step_name=self.names[index],
            items_done=done,
            items_total=total,
            message=message,
            elapsed_seconds=now - self.started_clock,
            rate=self.rate,
            eta_seconds=eta,
        )

    def _measure(self, now: float, done: int) -> None:
        """Fold the rate since the last measurement into the running average."""
        seconds = now - self.last_tick
        items = done - self.last_done
        if seconds <= 0 or items <= 0:
            return
        recent = items / seconds
        if self.rate is None:
            self.rate = recent
        else:  # tqdm smooths per update; a measurement here spans `items` of them
            weight = 1.0 - (1.0 - SMOOTHING) ** items
            self.rate = weight * recent + (1.0 - weight) * self.rate
        self.last_tick, self.last_done = now, done

    def _pace(self, index: int, fraction: float | None, step_elapsed: float) -> float:
        """Time taken against history's expectation, for the work done so far; 1 without it."""
        expected = self.expected
        if expected is None:
            return 1.0
        actual, planned = self.actual_done, self.expected_done
        if fraction is not None and fraction >= LIVE_FROM:
            actual += step_elapsed / fraction  # the running step, projected from its items
            planned += expected[index]
        elif expected[index] and step_elapsed > expected[index]:
            actual += step_elapsed  # already slower than expected, whatever came before
            planned += expected[index]
        return actual / planned if planned > 0 else 1.0

    def _eta(
        self,
        index: int,
        fraction: float | None,
        done: int | None,
        total: int | None,
        step_elapsed: float,
    ) -> float | None:
        pace = self._pace(index, fraction, step_elapsed)
        live = None
        if total and done and self.rate:
            live = max(0, total - done) / self.rate
        planned = None
        if self.expected is not None:
            budget = pace * self.expected[index]
            planned = budget * (1.0 - fraction) if fraction is not None else budget - step_elapsed
            planned = max(0.0, planned)
        if live is not None and planned is not None:
            trust = min(1.0, (fraction or 0.0) / LIVE_FROM)
            here = planned + (live - planned) * trust
        else:
            here = live if live is not None else planned
        if here is None:
            return None
        later = self._after(index, pace, step_elapsed, live)
        return None if later is None else here + later

    def _after(
        self, index: int, pace: float, step_elapsed: float, live: float | None = None
    ) -> float | None:
        """The steps after `index`: history scaled by the pace, or seconds per weight seen."""
        weight_after = self.weight_after[index]
        if not weight_after:
            return 0.0
        if self.expected is not None:
            return pace * self.expected_after[index]
        if self.weight_done:
            return self.actual_done / self.weight_done * weight_after
        if live is not None:
            return (step_elapsed + live) / self.weights[index] * weight_after
        return None
