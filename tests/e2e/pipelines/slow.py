"""Pipelines that run until cancelled; each writes to `marker` when and how it ended."""

from __future__ import annotations

import time

import anyio

from stepstream import Cancelled, Pipeline, Progress

spin = Pipeline("spin", description="a sync step that loops on progress.advance()")


@spin.step
def loop(marker: str, progress: Progress) -> int:
    """Count forever; Ctrl-C makes the next advance() raise Cancelled."""
    with open(marker, "w") as out:
        out.write("started\n")
        out.flush()
        count = 0
        try:
            while True:
                progress.advance()
                count += 1
        except Cancelled:
            out.write(f"cancelled after {count} items\n")
            raise
        finally:
            out.write("finally\n")


sleeper = Pipeline("sleeper", description="an async step awaiting a long sleep")


@sleeper.step
async def nap(marker: str) -> None:
    """Sleep for an hour; Ctrl-C cancels the await through anyio."""
    with open(marker, "w") as out:
        out.write("started\n")
        out.flush()
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            out.write("cancelled\n")
            raise
        finally:
            out.write("finally\n")


hog = Pipeline("hog", description="an async step that blocks the loop right after it starts")


@hog.step
async def stall(marker: str) -> None:
    """Hold the event loop for a moment after starting, so Ctrl-C lands before any await."""
    with open(marker, "w") as out:
        out.write("started\n")
        out.flush()
        time.sleep(1.0)
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            out.write("cancelled\n")
            raise
        finally:
            out.write("finally\n")


deaf = Pipeline("deaf", description="a sync step that never calls Progress")


@deaf.step
def ignore(marker: str) -> None:
    """Sleep a minute without a Progress call: a cancel cannot reach it."""
    with open(marker, "w") as out:
        out.write("started\n")
    time.sleep(60)
