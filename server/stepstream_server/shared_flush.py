"""Group commit: requests that wait for the store at the same time share one flush.

A 202 for a new execution promises the store keeps it, so each submission waits for
a flush that began after its record was appended. One flush (a hop to a worker
thread, and a SQLite commit) per request cost more than the rest of the request; a
flush begun later covers every record appended before it, so each request joins the
next flush not yet begun, and one flush answers all that joined it, its error too.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .dependencies import OffLoop


class _Round:
    """One flush and the requests waiting for it: set once it returned, with what it raised."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: Exception | None = None


class SharedFlush:
    """`await shared_flush()` returns once everything recorded before the call is kept, or
    raises what the flush raised (StoreError), as `Engine.flush` does; calls at the same
    time share one flush, and at most one runs at a time."""

    def __init__(self, flush: Callable[[], None], off_loop: OffLoop) -> None:
        self._flush = flush
        self._off_loop = off_loop
        self._next: _Round | None = None  # not begun: a record appended now is covered by it
        self._running: _Round | None = None  # begun: it may miss a record appended now

    async def __call__(self) -> None:
        waiting = self._next
        if waiting is None:
            waiting = self._next = _Round()
            with anyio.CancelScope(shield=True):  # those that joined it wait for it too
                await self._run(waiting)
        else:
            await waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error

    async def _run(self, round_: _Round) -> None:
        """Flush for everyone who joined `round_`, once the flush under way has returned."""
        while self._running is not None:
            await self._running.done.wait()
        self._next = None
        self._running = round_
        try:
            await self._off_loop(self._flush)
        except Exception as exc:
            round_.error = exc
        finally:
            self._running = None
            round_.done.set()
