"""The worker threads sync steps run on: one queue put there, one `call_soon_threadsafe` back.

`anyio.to_thread.run_sync` costs 50-100 µs of CPU a call (a checkpoint, a capacity
limiter, a cancel scope around a future), a third of a short execution; this costs
12-30 µs. Each event loop keeps its own idle threads, reused newest first; a thread
idle for `IDLE_SECONDS` retires. Up to `MAX_THREADS` run at once, so sync steps wait
for others only in a crowd far past what anyio allowed (40), and a burst of
executions cannot exhaust the process's threads; beyond it work waits its turn,
first in first out. Code on these threads may call `anyio.from_thread` as on
anyio's own; `check_cancelled` never raises there, as a cancelled step hears of it
at its next Progress call.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

import anyio.lowlevel

# anyio.from_thread finds the loop and the cancel scope through thread-locals that only
# anyio's own worker threads set (not public API, so anyio is pinned below 5): set here,
# in this one place.
from anyio._core._eventloop import claim_worker_thread, set_current_async_library, threadlocals

IDLE_SECONDS = 10.0
MAX_THREADS = 1_000

_Work = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]
_pools: anyio.lowlevel.RunVar[_Pool] = anyio.lowlevel.RunVar("stepstream_thread_pool")


async def run_sync(work: Callable[..., Any], *args: Any) -> Any:
    """`work(*args)` on a worker thread, in a copy of the caller's context.

    If the caller is cancelled, it stops waiting at once and the thread's result is
    dropped when it comes (what `abandon_on_cancel=True` does in anyio).
    """
    try:
        pool = _pools.get()
    except LookupError:
        pool = _Pool(asyncio.get_running_loop(), anyio.lowlevel.current_token())
        _pools.set(pool)
    return await pool.submit(work, args)


class _Pool:
    """One event loop's worker threads; touched only on the loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: anyio.lowlevel.EventLoopToken):
        self.loop = loop
        self.token = token
        self.idle: list[queue.SimpleQueue[_Work | None]] = []
        self.threads = 0
        self.waiting: collections.deque[_Work] = collections.deque()  # once MAX_THREADS run

    def submit(self, work: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        context = contextvars.copy_context()
        context.run(set_current_async_library, None)  # as anyio does: no loop runs there
        item = (context, work, args, future)
        if self.idle:
            self.idle.pop().put(item)
        elif self.threads < MAX_THREADS:
            self._start().put(item)
        else:
            self.waiting.append(item)
        return future

    def _free(self, inbox: queue.SimpleQueue[_Work | None]) -> None:
        """A thread is done: hand it the oldest waiting work, else let it idle."""
        while self.waiting:
            item = self.waiting.popleft()
            if not item[3].cancelled():
                inbox.put(item)
                return
        self.idle.append(inbox)

    def _start(self) -> queue.SimpleQueue[_Work | None]:
        self.threads += 1
        inbox: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        threading.Thread(
            target=self._serve, args=(inbox,), name="stepstream-step", daemon=True
        ).start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[_Work | None]) -> None:
        """The thread: run what arrives; after a long idle spell, ask the loop to retire it."""
        with claim_worker_thread(self.token.backend_class, self.token.native_token):
            while True:
                try:
                    work = inbox.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    if not self._call_on_loop(self._retire, inbox):
                        return
                    continue
                if work is None:
                    return
                context, function, args, future = work
                if future.cancelled():  # its caller stopped waiting before it began
                    if not self._call_on_loop(self._free, inbox):
                        return
                    continue
                result, error = _outcome(context, function, args)
                if not self._call_on_loop(self._settle, inbox, future, result, error):
                    return
                del work, result, error, context, function, args, future  # hold nothing idle

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> bool:
        """False once the loop is closed: the thread has nothing left to do."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    def _settle(
        self,
        inbox: queue.SimpleQueue[_Work | None],
        future: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        self._free(inbox)
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _retire(self, inbox: queue.SimpleQueue[_Work | None]) -> None:
        """Stop an idle thread, unless work was handed to it meanwhile."""
        if inbox in self.idle:
            self.idle.remove(inbox)
            self.threads -= 1
            inbox.put(None)


def _outcome(
    context: contextvars.Context, function: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Any, BaseException | None]:
    """Run the work in its context: its result, or what it raised (a future takes it)."""
    threadlocals.current_cancel_scope = None  # check_cancelled: see the module docstring
    try:
        return context.run(function, *args), None
    except StopIteration as exc:  # a future cannot hold one
        error = RuntimeError("a sync step raised StopIteration")
        error.__cause__ = exc
        return None, error
    except BaseException as exc:  # handed to the waiting task, as anyio does
        return None, exc
    finally:
        del threadlocals.current_cancel_scope
