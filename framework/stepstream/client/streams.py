"""Following WebSocket streams across dropped connections, without duplicates or gaps.

The bookkeeping lives here, apart from any I/O, so the sync and the async client
share it: `Follow` resumes one execution's stream with `?after=<last seq>`,
`Watch` re-reads what a watch of many executions missed (`GET .../events` per
execution, and the executions created meanwhile) before reading the new
connection, and `Reconnect` says how long to keep trying.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import ServerUnavailable, UnknownExecution
from ..model.events import (
    FINISHED,
    TERMINAL_EVENTS,
    AnyEvent,
    ErrorEvent,
    ExecutionRecord,
    StatusEvent,
)

CLOSE_POLICY_VIOLATION = 1008  # the watch fell too far behind: re-read, then watch again
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_EXECUTION = 4404
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0


def _refused(code: int, reason: str, url: str, execution_id: str | None) -> None:
    """Raise for the close codes that say reconnecting cannot help."""
    if code == CLOSE_UNAUTHORIZED:
        raise ServerUnavailable(url, reason or "missing or invalid bearer token", 401)
    if code == CLOSE_UNKNOWN_EXECUTION and execution_id is not None:
        raise UnknownExecution(execution_id)
    if code == CLOSE_BAD_REQUEST:
        raise ValueError(reason or "the server refused the stream's parameters")


class Follow:
    """One execution's stream: yields each event once, resumes after the last seq yielded."""

    def __init__(self, execution_id: str, after: int = 0) -> None:
        if after < 0:
            raise ValueError(f"after must be a seq (an integer >= 0); got {after}")
        self.execution_id = execution_id
        self.last = after
        self.done = False
        self._opening = False
        self._status_yielded = False
        self._ended = False  # the status said finished: nothing may follow it

    @property
    def path(self) -> str:
        """The WebSocket route."""
        return f"/api/v1/executions/{quote(self.execution_id, safe='')}/progress/ws"

    def params(self) -> dict[str, Any]:
        """Resume after the last seq yielded."""
        return {"after": self.last}

    def connected(self) -> None:
        """A new connection: its first message is a status saying where the stream stands."""
        self._opening = True

    def accept(self, event: AnyEvent) -> bool:
        """Whether to yield the event; marks the stream done at the terminal one."""
        if isinstance(event, ErrorEvent):
            return False  # the close code that follows says what it was
        if self._opening:
            self._opening = False
            if isinstance(event, StatusEvent):
                self._ended = event.status in FINISHED
                first, self._status_yielded = not self._status_yielded, True
                return first  # a reconnect's status repeats what was already yielded
        if event.seq <= self.last:
            return False
        self.last = event.seq
        if isinstance(event, TERMINAL_EVENTS):
            self.done = True
        return True

    def closed(self, code: int, reason: str, url: str) -> None:
        """The server closed the stream before its end: raise, or return to reconnect."""
        _refused(code, reason, url, self.execution_id)
        if self._ended:  # it ended at or before `after`, so no terminal event was due
            self.done = True


class Watch:
    """A watch of many executions; after a reconnect it re-reads what the gap hid."""

    path = "/api/v1/executions/ws"

    def __init__(self, ids: list[str] | None = None) -> None:
        self.ids = list(dict.fromkeys(ids)) if ids else None
        self.last: dict[str, int] = {}
        self.finished: set[str] = set()
        self.horizon: str | None = None  # the newest execution id known; newer ones are new
        self.resync = False
        self.began = False

    @property
    def done(self) -> bool:
        """A watch of listed ids ends once each has finished (or is unknown); else never."""
        return self.ids is not None and all(i in self.finished for i in self.ids)

    def params(self) -> dict[str, Any]:
        """`?ids=` when watching listed executions."""
        return {"ids": ",".join(self.ids)} if self.ids else {}

    def begin(self, newest: list[ExecutionRecord]) -> None:
        """Before the first connection: the newest execution so far, if any."""
        self.began = True
        if newest:
            self._saw(newest[0].execution_id)

    def connected(self) -> None:
        """Nothing to do: every connection starts with fresh statuses."""

    def _saw(self, execution_id: str) -> None:
        if self.horizon is None or execution_id > self.horizon:  # ids sort by creation time
            self.horizon = execution_id

    def accept(self, event: AnyEvent) -> bool:
        """Whether to yield the event: each event once, per execution, in seq order."""
        execution_id = event.execution_id
        if isinstance(event, ErrorEvent):  # a listed id no execution has
            first = execution_id not in self.finished
            self.finished.add(execution_id)
            return first
        last = self.last.get(execution_id)
        if last is not None and event.seq <= last:
            return False
        self.last[execution_id] = event.seq
        self._saw(execution_id)
        if isinstance(event, TERMINAL_EVENTS) or (
            isinstance(event, StatusEvent) and event.status in FINISHED
        ):
            self.finished.add(execution_id)
        return True

    def closed(self, code: int, reason: str, url: str) -> None:
        """The watch ended (1008 when it fell too far behind): re-read, then watch again."""
        _refused(code, reason, url, None)
        self.resync = True

    def dropped(self) -> None:
        """The connection broke: events may have been missed, so re-read before reading on."""
        self.resync = True

    def stale(self) -> list[str]:
        """Executions seen but not seen to finish: their events after the last seq are re-read."""
        return [i for i in self.last if i not in self.finished]

    def fresh(self, page: list[ExecutionRecord]) -> tuple[list[str], bool]:
        """Unseen executions on a page (newest first) newer than the horizon; and whether
        older pages may hold more."""
        found = []
        for record in page:
            if self.horizon is not None and record.execution_id <= self.horizon:
                return found, False
            if record.execution_id not in self.last:
                found.append(record.execution_id)
        return found, True


class Reconnect:
    """How long a stream keeps reconnecting after it dropped, and the pause before each try.

    A stream that never received anything fails at once: the server is not there,
    or refuses it. Once it has, it tries again for `retry_for` seconds.
    """

    def __init__(self, url: str, retry_for: float) -> None:
        self.url = url
        self.retry_for = retry_for
        self._received = False
        self._deadline: float | None = None
        self._pause = FIRST_PAUSE

    def received(self) -> None:
        """A message arrived: the connection works, so the next drop gets a fresh budget."""
        self._received = True
        self._deadline = None
        self._pause = FIRST_PAUSE

    def pause(self, reason: str) -> float:
        """Seconds to wait before the next try; raises ServerUnavailable once out of time."""
        if not self._received:
            raise ServerUnavailable(self.url, reason)
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.retry_for
        remaining = self._deadline - now
        if remaining <= 0:
            raise ServerUnavailable(
                self.url, f"{reason}; still no connection after {self.retry_for:g}s"
            )
        pause, self._pause = min(self._pause, remaining), min(self._pause * 2, MAX_PAUSE)
        return pause


class EventStream(Iterator[AnyEvent]):
    """Typed events as they happen; `with` it (or `close()`) to leave before its end."""

    def __init__(self, events: Generator[AnyEvent, None, None]) -> None:
        self._events = events

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> AnyEvent:
        return next(self._events)

    def close(self) -> None:
        """Close the connection; iterating afterwards ends at once."""
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Failure:
    """An exception of the reading task, handed to the reader of the stream."""

    def __init__(self, error: Exception) -> None:
        self.error = error


Pump = Callable[[Callable[[AnyEvent], Awaitable[None]]], Awaitable[None]]


class AsyncEventStream(AsyncIterator[AnyEvent]):
    """Typed events as they happen, read by a task of their own.

    `async with client.events(id) as events: async for event in events: ...`
    closes the connection when the block ends, early or not. A bare `async for`
    works too; to leave one early, use the `async with` form (or
    `contextlib.aclosing`), since the connection must close in the task that opened it.
    """

    def __init__(self, pump: Pump) -> None:
        self._pump = pump
        self._group: anyio.abc.TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[AnyEvent | _Failure] | None = None

    async def __aenter__(self) -> AsyncEventStream:
        if self._group is not None:
            raise RuntimeError("this stream is already open; make another with events()/watch()")
        send, self._receive = anyio.create_memory_object_stream[AnyEvent | _Failure]()
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._run, send)
        return self

    async def _run(self, send: MemoryObjectSendStream[AnyEvent | _Failure]) -> None:
        async with send:
            try:
                await self._pump(send.send)
            except Exception as exc:  # raised where the events are read, not in this task
                await send.send(_Failure(exc))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        group, self._group = self._group, None
        if group is None:
            return
        group.cancel_scope.cancel()
        # Not the caller's exception: the reading task is cancelled above, and a
        # GeneratorExit passed in would come back wrapped in an exception group.
        await group.__aexit__(None, None, None)
        if self._receive is not None:
            self._receive.close()

    def __aiter__(self) -> AsyncIterator[AnyEvent]:
        return self if self._group is not None else self._iterate()

    async def _iterate(self) -> AsyncIterator[AnyEvent]:
        async with self:
            async for event in self:
                yield event

    async def __anext__(self) -> AnyEvent:
        if self._receive is None:
            raise RuntimeError("iterate the stream with `async for` or inside `async with`")
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, _Failure):
            raise item.error
        return item
