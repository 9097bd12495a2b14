"""An async pipeline whose steps await I/O-like work (sleeps standing in for HTTP calls).

uv run stepstream run examples/async_fetch.py:fetch -i pages=20
"""

from __future__ import annotations

import anyio

from stepstream import Pipeline, Progress

fetch = Pipeline("fetch", description="Fetch pages concurrently, parse them, summarise")


@fetch.step
async def download(pages: int = 20, latency: float = 0.05, concurrency: int = 5) -> list[str]:
    """Fetch `pages` pages, `concurrency` at a time."""
    bodies: list[str] = [""] * pages
    limiter = anyio.CapacityLimiter(concurrency)

    async def get(i: int) -> None:
        async with limiter:
            await anyio.sleep(latency)
            bodies[i] = f"<html><title>page {i}</title>{'word ' * (i + 1)}</html>"

    async with anyio.create_task_group() as tg:
        for i in range(pages):
            tg.start_soon(get, i)
    return bodies


@fetch.step(weight=2)
async def parse(bodies: list[str], progress: Progress) -> list[int]:
    """Count words per page, yielding to the loop between pages."""
    counts = []
    for body in progress.iter(bodies):
        await anyio.sleep(0.01)
        counts.append(body.count("word"))
    return counts


@fetch.step
def summarise(counts: list[int]) -> dict:
    """A sync step in an async pipeline: runs on a worker thread."""
    return {"pages": len(counts), "words": sum(counts), "largest": max(counts, default=0)}
