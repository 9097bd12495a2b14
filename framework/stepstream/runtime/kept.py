"""Waiting on the event loop until the store keeps what was recorded, many waiters at a time.

A server answers a new execution only once the store keeps it. Asking the store
(`on_kept`) per waiter costs each one a wake-up of the event loop from the store's
writer thread, as dear as a SQLite commit itself; so the waiters that arrive in one
turn of the loop ask once, together, at the end of that turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from ..errors import StoreError
from ..stores import ExecutionStore


class _Round:
    """The waiters of one turn of the loop: set once the store answered, with its error."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: StoreError | None = None

    def settle(self, error: StoreError | None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class KeptWaiters:
    """`await wait()` returns once everything appended to the store before it is kept;
    StoreError (at once, not after the store's retries) if the write fails."""

    def __init__(self, store: ExecutionStore) -> None:
        self._store = store
        self._open: _Round | None = None  # joined this turn; asks the store at its end

    async def wait(self) -> None:
        round_ = self._open
        if round_ is None:
            round_ = self._open = _Round()
            asyncio.get_running_loop().call_soon(self._ask, round_)
        await round_.done.wait()
        if round_.error is not None:
            raise round_.error

    def _ask(self, round_: _Round) -> None:
        """Ask the store about everything its waiters appended (each did before joining)."""
        self._open = None
        loop = asyncio.get_running_loop()
        here = threading.get_ident()

        def settle(error: StoreError | None) -> None:
            if threading.get_ident() == here:  # kept at once: no wake-up of the loop needed
                round_.settle(error)
            else:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(round_.settle, error)

        try:
            self._store.on_kept(lambda: settle(None), settle)
        except StoreError as exc:  # a store that cannot even be asked: its waiters hear why
            round_.settle(exc)
        except Exception as exc:  # e.g. a store plugin written before `failed` existed
            error = StoreError(f"the store could not be asked whether it kept the execution: {exc}")
            error.__cause__ = exc
            round_.settle(error)
