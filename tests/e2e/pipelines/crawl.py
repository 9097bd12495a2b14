"""A slow sync pipeline for the restart tests: three steps that sleep in small increments."""

from __future__ import annotations

import time

from stepstream import Pipeline, Progress

crawl = Pipeline("crawl", description="three sync steps sleeping `pause` seconds per item")


def _walk(items: int, pause: float, progress: Progress) -> tuple[int, float]:
    """Sleep item by item, reporting each; every item is a cancellation point."""
    for _ in progress.iter(range(items)):
        time.sleep(pause)
    return items, pause


@crawl.step
def fetch(progress: Progress, items: int = 10, pause: float = 0.01) -> tuple[int, float]:
    """Step 0."""
    return _walk(items, pause, progress)


@crawl.step
def parse(plan: tuple[int, float], progress: Progress) -> tuple[int, float]:
    """Step 1."""
    return _walk(*plan, progress)


@crawl.step
def store(plan: tuple[int, float], progress: Progress) -> dict[str, int]:
    """Step 2; the outputs count the items of all three steps."""
    items, _ = _walk(*plan, progress)
    return {"items": 3 * items}
