"""Pipelines the server tests run: quick ones, failing ones and ones held open by a gate.

A test opens a gate (a threading.Event named by the `gate` input) to let a held
execution finish, so tests wait for events instead of sleeping.
`stepstream serve --pipelines tests/server/pipelines.py` registers them too.
"""

from __future__ import annotations

import threading
import time

import anyio

from stepstream import Pipeline, Progress

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    """The gate called `name`, created closed on first use."""
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


def open_gate(name: str) -> None:
    """Let the executions held by this gate finish."""
    gate(name).set()


quick = Pipeline("quick", description="Three sync steps counting items; finishes fast")


@quick.step
def count(progress: Progress, items: int = 5, seconds_per_item: float = 0.005) -> int:
    """Report `items` items, sleeping a little per item."""
    for _ in progress.iter(range(items)):
        time.sleep(seconds_per_item)
    return items


@quick.step(weight=2)
def double(value: int, progress: Progress) -> int:
    """A heavier step, so percentages are weighted."""
    for _ in progress.iter(range(value)):
        time.sleep(0.001)
    return value * 2


@quick.step
def report(value: int) -> dict:
    """The outputs."""
    return {"total": value}


held = Pipeline("held", description="A sync step that waits until its gate opens")


@held.step
def wait_for_gate(gate_name: str, progress: Progress) -> str:
    """Block a worker thread until the gate opens; stop at once when cancelled."""
    progress.total = 1
    opened = gate(gate_name)
    while not opened.wait(0.01):
        if progress.cancelled:
            progress.check()
    progress.advance()
    return gate_name


@held.step
def finish(value: str) -> dict:
    """The outputs name the gate."""
    return {"gate": value}


held_async = Pipeline("held_async", description="An async step that waits until its gate opens")


@held_async.step
async def await_gate(gate_name: str) -> str:
    """Poll the gate on the event loop; anyio cancellation ends it."""
    opened = gate(gate_name)
    while not opened.is_set():
        await anyio.sleep(0.01)
    return gate_name


@held_async.step
async def finish_async(value: str) -> dict:
    """The outputs name the gate."""
    return {"gate": value}


failing = Pipeline("failing", description="The second step raises")


@failing.step
def prepare(n: int = 3) -> int:
    """Succeeds."""
    return n


@failing.step
def explode(value: int) -> int:
    """Raises a ValueError a person can read."""
    raise ValueError(f"cannot handle {value}")


chatty = Pipeline(
    "chatty", description="Waits for its gate, then emits many large progress messages"
)


@chatty.step
def chatter(
    progress: Progress, gate_name: str, items: int = 100, message_size: int = 500_000
) -> int:
    """Big progress messages, enough to fill the socket buffers of a reader that lags."""
    opened = gate(gate_name)
    while not opened.wait(0.01):
        if progress.cancelled:
            progress.check()
    filler = "x" * message_size
    progress.total = items
    for i in range(items):
        progress.message = f"{i} {filler}"
        progress.advance()
        time.sleep(0.005)
    return items
