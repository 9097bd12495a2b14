"""Step durations of past executions, so an ETA exists from an execution's first second.

History is the median recorded duration of each step over the pipeline's last
`KEEP` completed executions; `estimates.py` says how the ETA uses it (scaled by
the execution's pace, trusted less as the running step's own items pass).

Keeping history must not cost the steps anything: a finished execution adds a
reference to its step list (O(1)); medians are computed when an execution
starts, only for pipelines that typically run long enough for an ETA to matter,
and cached until the next execution of that pipeline completes.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from typing import TYPE_CHECKING

from ..stores import step_durations_of

if TYPE_CHECKING:
    from ..model.events import ExecutionRecord, StepState
    from ..stores import ExecutionStore

KEEP = 20
WORTH_AN_ETA = 0.05  # seconds: quicker pipelines are over before anyone reads an ETA


class _PipelineHistory:
    """One pipeline's recent runs: step lists added live, durations loaded from the store."""

    __slots__ = ("expected", "expected_for", "loaded", "runs", "totals")

    def __init__(self, loaded: dict[str, list[float]]) -> None:
        self.loaded = loaded
        self.runs: deque[list[StepState]] = deque(maxlen=KEEP)
        self.totals: deque[float] = deque(maxlen=KEEP)
        self.expected: tuple[list[float], list[float]] | None = None
        self.expected_for: list[str] | None = None

    def typical_total(self) -> float:
        if self.totals:
            return statistics.median(self.totals)
        return sum(statistics.median(v) for v in self.loaded.values() if v)

    def medians(self, step_names: list[str]) -> tuple[list[float], list[float]] | None:
        """Per-step medians over the newest runs, then the loaded ones; None if a step has none."""
        durations = step_durations_of(self.runs)
        medians = []
        for name in step_names:
            recent = (durations.get(name, []) + self.loaded.get(name, []))[:KEEP]
            if not recent:
                return None
            medians.append(statistics.median(recent))
        after = [0.0] * len(medians)
        for i in range(len(medians) - 2, -1, -1):
            after[i] = after[i + 1] + medians[i + 1]
        return medians, after


class StepHistory:
    """Recent durations per pipeline, loaded from the store once, then kept up to date."""

    def __init__(self, store: ExecutionStore) -> None:
        self._store = store
        self._pipelines: dict[str, _PipelineHistory] = {}
        self._lock = threading.Lock()

    def loaded(self, pipeline: str) -> bool:
        """True once `pipeline`'s history is in memory."""
        return pipeline in self._pipelines

    def load(self, pipeline: str) -> None:
        """Read `pipeline`'s recent durations from the store; does I/O, so not on the event loop."""
        if pipeline in self._pipelines:
            return
        recorded = self._store.step_durations(pipeline, KEEP)
        with self._lock:
            self._pipelines.setdefault(pipeline, _PipelineHistory(recorded))

    def add(self, record: ExecutionRecord) -> None:
        """Count a completed execution: O(1), the work waits until an estimate is needed."""
        with self._lock:
            history = self._pipelines.setdefault(record.pipeline, _PipelineHistory({}))
            history.runs.appendleft(record.steps)
            if record.started_at is not None and record.finished_at is not None:
                history.totals.appendleft((record.finished_at - record.started_at).total_seconds())
            history.expected_for = None

    def expected(
        self, pipeline: str, step_names: list[str]
    ) -> tuple[list[float], list[float]] | None:
        """Per-step median durations and, per step, the sum of the medians after it; or None."""
        with self._lock:
            history = self._pipelines.get(pipeline)
            if history is None or history.typical_total() < WORTH_AN_ETA:
                return None
            if history.expected_for != step_names:
                history.expected = history.medians(step_names)
                history.expected_for = step_names
            return history.expected
