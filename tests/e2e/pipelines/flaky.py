"""Pipelines that retry and time out, for the CLI's failure path."""

from __future__ import annotations

import time

from stepstream import Pipeline, Progress

flaky = Pipeline("flaky", description="a step that fails on every one of its 3 tries")


@flaky.step(retries=2, retry_delay=0.01, backoff=2.0)
def fetch(url: str = "http://example.invalid") -> str:
    """Fail the same way each time."""
    raise OSError(f"cannot reach {url}")


slow = Pipeline("slow-with-timeout", description="a step that outlives its timeout")


@slow.step(timeout=0.2)
def crawl(pages: int = 1000, progress: Progress | None = None) -> int:
    """Check in with Progress while working, so the timeout can stop it."""
    assert progress is not None
    for _ in progress.iter(range(pages)):
        time.sleep(0.01)
    return pages
