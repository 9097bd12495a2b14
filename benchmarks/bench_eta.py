"""How right the ETA is: the relative error of `eta_seconds` against the true time left.

Run:  uv run python benchmarks/bench_eta.py            (about a minute)
      uv run python benchmarks/bench_eta.py --rounds 3

Each scenario runs real pipelines whose items sleep; every item the step reads
the engine's ETA (and, in the single-step scenario, tqdm's own estimate for the
same loop: the peer). Once the run is over and its true length known, the
readings nearest 10, 25, 50, 75 and 90% of the run are compared with the true
time left: error = |eta - left| / left. A missing ETA (none yet) is reported as
such, not as an error. Figures are medians over the rounds, with the spread
(half the interquartile range), and the load average before and after.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from stepstream import Engine, Pipeline, Progress

POINTS = (0.10, 0.25, 0.50, 0.75, 0.90)
console = Console(width=132)


class Readings:
    """(seconds since start, our ETA, tqdm's ETA) taken item by item from inside the steps."""

    def __init__(self) -> None:
        self.began = 0.0
        self.rows: list[tuple[float, float | None, float | None]] = []
        self.engine: Engine | None = None
        self.execution_id = ""

    def take(self, bar: Any = None) -> None:
        """A reading now. Ours is the latest snapshot's ETA counted down to this moment, as a
        client showing it would: snapshots are at most one progress interval old."""
        assert self.engine is not None
        record = self.engine.get(self.execution_id)
        progress = record.progress
        ours = None
        if progress is not None and progress.eta_seconds is not None and record.started_at:
            taken = record.started_at + timedelta(seconds=progress.elapsed_seconds or 0.0)
            ours = progress.eta_seconds - (datetime.now(UTC) - taken).total_seconds()
        theirs = None
        if bar is not None:
            rate = bar.format_dict["rate"]
            if rate:
                theirs = (bar.total - bar.n) / rate
        self.rows.append((time.perf_counter() - self.began, ours, theirs))

    def errors(self, total: float) -> dict[float, tuple[float | None, float | None]]:
        """Relative errors at each point of the run: ours, tqdm's."""
        found = {}
        for point in POINTS:
            at = point * total
            row = min(self.rows, key=lambda r: abs(r[0] - at))
            left = total - row[0]
            found[point] = tuple(None if eta is None else abs(eta - left) / left for eta in row[1:])
        return found


def counting(
    name: str,
    plans: list[Callable[[int], float]],
    items: int,
    readings: Readings,
    *,
    with_total: bool = True,
    peer: bool = False,
) -> Pipeline:
    """One step per plan; a plan gives each item's pause. Readings are taken every item."""
    pipeline = Pipeline(name)

    def make(plan: Callable[[int], float], first: bool) -> Callable[..., int]:
        def step(progress: Progress, n: int = items) -> int:
            bar = tqdm(total=n, file=io.StringIO(), mininterval=0) if peer else None
            source: Iterator[int] = iter(range(n)) if not with_total else range(n)  # type: ignore[assignment]
            for i in progress.iter(source):
                time.sleep(plan(i))
                if bar is not None:
                    bar.update()
                readings.take(bar)
            return n

        def later(n: int, progress: Progress) -> int:
            return step(progress, n)

        return step if first else later

    for i, plan in enumerate(plans):
        pipeline.step(make(plan, i == 0), name=f"step_{i}")
    return pipeline


async def measure(engine: Engine, pipeline: Pipeline, readings: Readings) -> dict[float, Any]:
    readings.rows.clear()
    readings.engine = engine
    job = engine.create(pipeline, {})
    readings.execution_id = job.execution_id
    readings.began = time.perf_counter()
    await engine.execute(job)
    return readings.errors(time.perf_counter() - readings.began)


def uniform(pause: float) -> Callable[[int], float]:
    return lambda i: pause


SCENARIOS: dict[str, dict[str, Any]] = {
    "one step, 100 uniform items (first run)": {
        "plans": [uniform(0.015)],
        "items": 100,
        "peer": True,
        "uniform": True,
    },
    "three steps of different speeds, first run": {
        "plans": [uniform(0.004), uniform(0.016), uniform(0.008)],
        "items": 50,
    },
    "three steps of different speeds, with history": {
        "plans": [uniform(0.004), uniform(0.016), uniform(0.008)],
        "items": 50,
        "history": 2,
        "uniform": True,
    },
    "items that speed up (0.03 s to 0.003 s)": {
        "plans": [lambda i: 0.03 - 0.027 * i / 99],
        "items": 100,
        "peer": True,
    },
    "a step with no total, with history": {
        "plans": [uniform(0.015)],
        "items": 100,
        "with_total": False,
        "history": 2,
        "uniform": True,
    },
    "a step with no total, first run": {
        "plans": [uniform(0.015)],
        "items": 100,
        "with_total": False,
    },
}


async def scenario(spec: dict[str, Any]) -> dict[float, Any]:
    readings = Readings()
    pipeline = counting(
        "eta",
        spec["plans"],
        spec["items"],
        readings,
        with_total=spec.get("with_total", True),
        peer=spec.get("peer", False),
    )
    engine = Engine(load_entrypoints=False, progress_interval=0.02)
    for _ in range(spec.get("history", 0)):
        await measure(engine, pipeline, readings)
    return await measure(engine, pipeline, readings)


def summary(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "no ETA"
    median = statistics.median(known)
    spread = ""
    if len(known) >= 4:
        q1, _, q3 = statistics.quantiles(known, n=4)
        spread = f" ±{(q3 - q1) / 2 * 100:.1f}"
    missing = f" ({len(values) - len(known)} none)" if len(known) < len(values) else ""
    return f"{median * 100:.1f}%{spread}{missing}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[float, Any]]] = {name: [] for name in SCENARIOS}
    for _ in range(args.rounds):  # rounds alternate over the scenarios
        for name, spec in SCENARIOS.items():
            results[name].append(anyio.run(scenario, spec))
    load_after = os.getloadavg()[0]
    table = Table(title="Relative error of the ETA against the true time left (median ± half IQR)")
    table.add_column("scenario")
    for point in POINTS:
        table.add_column(f"at {point:.0%}", justify="right")
    for name, spec in SCENARIOS.items():
        rounds = results[name]
        table.add_row(name, *(summary([r[p][0] for r in rounds]) for p in POINTS))
        if spec.get("peer"):
            table.add_row(
                "  tqdm, same loop (peer)", *(summary([r[p][1] for r in rounds]) for p in POINTS)
            )
    console.print(
        f"load average {load_before:.2f} before, {load_after:.2f} after; "
        f"{args.rounds} rounds; Python {os.sys.version.split()[0]}"
    )
    console.print(table)
    console.print(
        "goal: within 15% from 10% of the run on uniform scenarios "
        f"({', '.join(n for n, s in SCENARIOS.items() if s.get('uniform'))}); "
        "better than tqdm on the single step after its first second"
    )


if __name__ == "__main__":
    main()
