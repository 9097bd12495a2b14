"""A subscriber's view of the event stream: replay what it missed, then follow live.

Each subscription buffers on its own (an `EventQueue`), so a slow reader never
slows the pipeline or another reader: lifecycle events queue in order and are
never dropped, while progress events wait as one slot per execution that the
newest one overwrites.
One execution has at most three lifecycle events, so its buffer stays small; a
watcher follows any number of executions, so its buffer has a bound, and a
watcher that falls that far behind ends with SubscriptionOverflow instead of
dropping lifecycle events.

A reader that can write an event out at once (a WebSocket whose transport takes
bytes without waiting) sets `send_now`: while that reader waits with nothing
buffered, an event pushed on its loop goes straight out and its task is not
woken, so a fan-out to a thousand caught-up readers wakes no task. When
`send_now` cannot write without waiting it says so, and the event is buffered
as before: a slow reader still falls back to its own buffer and coalescing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

from ..errors import SubscriptionOverflow
from ..model.events import TERMINAL_EVENTS, Event, LogEvent, StatusEvent
from .queue import EventQueue

WATCH_BUFFER = 10_000  # queued items a watcher may hold before it ends with SubscriptionOverflow


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """Async iterator over events; a single-execution one ends after the terminal event.

    Without `execution_id` it follows every execution it is fed (a watcher), holding
    at most `WATCH_BUFFER` queued items unless made `bounded=False` (a transport's
    sender, which must not lose lifecycle events: its queue grows by those only,
    progress being coalesced). It may be made on any thread; it belongs to the
    event loop that first reads it.
    """

    def __init__(
        self,
        *,
        unsubscribe: Callable[[Subscription], None],
        execution_id: str | None = None,
        bounded: bool = True,
        logs: bool = False,
    ) -> None:
        self.execution_id = execution_id
        self.status: StatusEvent | None = None
        self._lock = threading.Lock()
        self._queue = EventQueue()
        self._last_seq: dict[str, int] = {}
        self._after = 0
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the reader's, from its first wait
        self._loop_thread = 0
        self._unsubscribe: Callable[[Subscription], None] | None = unsubscribe
        self._single = execution_id is not None
        self.logs = logs  # whether captured log lines (LogEvent) are delivered too
        self._limit = WATCH_BUFFER if bounded and not self._single else sys.maxsize
        self._ended = False
        self._overflow: SubscriptionOverflow | None = None
        self._replay: deque[Event] = deque()
        self._final = False  # the replay is all there is
        # Writes an event past the waiting reader; False when it cannot without waiting.
        self.send_now: Callable[[Event], bool] | None = None

    def begin(self, status: StatusEvent, replay: Iterable[Event]) -> None:
        """Set what comes first: the status snapshot, then the events after `status.seq`.

        Called once the subscription is registered, so an event published meanwhile
        is either in `replay` or queued live, and duplicates are dropped by seq.
        """
        self.status = status
        self._after = status.seq
        self._replay.extend(e for e in replay if e.seq > status.seq or type(e) is LogEvent)

    def seen(self, statuses: Iterable[StatusEvent]) -> None:
        """Tell a watcher which statuses its reader was already sent; events they cover are dropped.

        Call it before reading: subscribe first, then read the statuses, so an event
        published in between is either covered by a status or delivered, never lost.
        """
        for status in statuses:
            self._last_seq[status.execution_id] = status.seq

    def push(self, event: Event) -> None:
        """Queue a live event; safe from any thread, never blocks on the reader."""
        with self._lock:
            if self._ended:
                return
            if self._waiter is not None and self.send_now is not None and self._sent_now(event):
                return
            if self._queue.push(event) and len(self._queue) > self._limit:
                self._overflowed()
            waiter = self._waiter
            self._waiter = None
        if waiter is not None:
            self._wake(waiter)

    def _sent_now(self, event: Event) -> bool:
        """Send `event` past the reader, which waits with nothing buffered; lock held.

        Only on the reader's thread, so its writes keep their order; never the
        terminal event of an execution's stream, which the reader must see to close.
        """
        if threading.get_ident() != self._loop_thread:
            return False
        if self._single and isinstance(event, TERMINAL_EVENTS):
            return False
        if not self._fresh(event):
            return True  # the reader would drop it too
        assert self.send_now is not None
        if not self.send_now(event):
            return False
        self._note(event)
        return True

    def _overflowed(self) -> None:
        """The buffer is full: drop it and end, so the reader learns it must resync; lock held.

        Unsubscribing is left to the reader (`__anext__`): the publisher calling this
        may hold the broadcaster's lock.
        """
        self._overflow = SubscriptionOverflow(self._limit)
        self._ended = True
        self._queue.clear()

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        """Resolve now on the reader's thread, else via its loop; a thread id costs no getpid()."""
        loop = waiter.get_loop()
        if loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            _resolve(waiter)
        else:
            loop.call_soon_threadsafe(_resolve, waiter)

    def _is_new(self, event: Event) -> bool:
        if not self._fresh(event):
            return False
        self._note(event)
        return True

    def _fresh(self, event: Event) -> bool:
        if type(event) is LogEvent:
            return True  # lines carry their own numbers; each batch is pushed once
        return event.seq > self._last_seq.get(event.execution_id, self._after)

    def _note(self, event: Event) -> None:
        """Remember `event` as delivered, so a replayed or repeated copy is dropped."""
        if type(event) is LogEvent:
            return
        if isinstance(event, TERMINAL_EVENTS) and not self._single:
            self._last_seq.pop(event.execution_id, None)  # a watcher must not grow forever
        else:
            self._last_seq[event.execution_id] = event.seq

    def end_after_replay(self) -> None:
        """Nothing will come but the replay: stop listening, and end once it is read."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe(self)
        self._final = True

    def _pop(self) -> Event | None:
        while self._replay:
            event = self._replay.popleft()
            if self._is_new(event):
                return event
        if self._final:
            self._ended = True
            return None
        with self._lock:
            while (event := self._queue.pop()) is not None:
                if self._is_new(event):
                    return event
            if not self._ended:
                loop = self._loop
                if loop is None:
                    loop = self._loop = asyncio.get_running_loop()
                    self._loop_thread = threading.get_ident()
                self._waiter = loop.create_future()
            return None

    async def take(self, limit: int, linger: float = 0.0) -> list[Event]:
        """The next event (waiting for it), and as many more as are queued, up to `limit`.

        With `linger`, waits that many seconds after the first before taking the rest,
        so the progress arriving meanwhile coalesces instead of being taken one by one.
        Empty once the subscription has ended.
        """
        taken: list[Event] = []
        async for event in self:
            taken.append(event)
            break
        if linger and taken and not self._ended:
            await asyncio.sleep(linger)
        while len(taken) < limit and not self._ended and (event := self._pop()) is not None:
            taken.append(event)
        return taken

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._ended:
            event = self._pop()
            if event is not None:
                if self._single and isinstance(event, TERMINAL_EVENTS):
                    self._ended = True
                    self.close()
                return event
            waiter = self._waiter
            if waiter is not None:
                await waiter
        if self._overflow is not None:
            self.close()
            raise self._overflow
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop receiving and free everything held for this subscriber; idempotent."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe(self)
        with self._lock:
            self._ended = True
            self._replay.clear()
            self._queue.clear()
            self._last_seq.clear()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    async def aclose(self) -> None:
        """Async alias of `close`, for `contextlib.aclosing` and async generators' habits."""
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """How many queued items wait for the reader (progress counts once per execution)."""
        return len(self._replay) + len(self._queue)
