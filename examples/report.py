"""A graph pipeline: one load, two analyses side by side, one report that takes both.

uv run stepstream run examples/report.py:report -i days=30
"""

from __future__ import annotations

import asyncio
import random
import time

from stepstream import Pipeline, Progress

report = Pipeline(
    "report",
    description="Load daily sales, then summarise and look for outliers at once",
    max_parallel=2,
    outputs=["summary", "outliers"],
)


@report.step
def sales(days: int = 30, seed: int = 3) -> list[float]:
    """Daily totals standing in for a query."""
    rng = random.Random(seed)
    return [round(rng.gauss(1000, 150), 2) for _ in range(days)]


@report.step(weight=2)
def summary(sales: list[float], progress: Progress) -> dict[str, float]:
    """Takes `sales` by name; runs while `outliers` does."""
    total = 0.0
    for day in progress.iter(sales):
        total += day
        time.sleep(0.01)  # stands in for per-day work
    return {"total": round(total, 2), "mean": round(total / len(sales), 2)}


@report.step(weight=2)
async def outliers(sales: list[float], progress: Progress, threshold: float = 1.5) -> list[int]:
    """Async beside the sync `summary`; `threshold` keeps its default."""
    mean = sum(sales) / len(sales)
    spread = (sum((day - mean) ** 2 for day in sales) / len(sales)) ** 0.5
    found = []
    for index, day in enumerate(progress.iter(sales)):
        await asyncio.sleep(0.01)  # stands in for a lookup per day
        if abs(day - mean) > threshold * spread:
            found.append(index)
    return found


@report.step
def publish(summary: dict[str, float], outliers: list[int], days: int) -> None:
    """Waits for both analyses and takes the `days` input too; what it prints is logged."""
    print(f"{days} days, total {summary['total']}, {len(outliers)} outliers")
