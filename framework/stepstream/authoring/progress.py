"""The Progress handle a step asks for: cheap enough to call once per item."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, TypeVar

from ..defaults import DEFAULT_PROGRESS_INTERVAL as DEFAULT_INTERVAL
from ..errors import Cancelled
from ..model.values import MAX_MESSAGE_CHARS, clean_text

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

MIN_POKE_PERIOD = 0.01
# Fast `message`/`check` calls double the stride on every call; unbounded, it grows
# into an integer of that many bits and each call costs more than the last.
MAX_STRIDE = 1 << 20
# Makes a Throttle's `stopped` event once, whichever thread asks first.
_STOPPING = threading.Lock()


class Throttle:
    """Shared by the steps of one execution: when progress may next be emitted, and cancellation.

    `cancelled` makes the next Progress call raise `interrupt` (a step's time is up)
    or else Cancelled; `stopped` is set by a cancel, for whoever waits in a thread.
    """

    __slots__ = (
        "_resume",
        "_stopped",
        "cancelled",
        "interrupt",
        "interval",
        "next_at",
        "progress",
    )

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        if interval < 0:
            raise ValueError(f"progress interval must be >= 0 seconds, got {interval}")
        self.interval = interval
        self.next_at = 0.0
        self.cancelled = False
        self.interrupt: BaseException | None = None
        self._stopped: threading.Event | None = None
        self.progress: Progress | None = None
        self._resume: Callable[[], None] | None = None  # set while the pokes wait for a stride

    @property
    def stopped(self) -> threading.Event:
        """Set by a cancel, for a thread that waits; made on first use, as few executions wait."""
        with _STOPPING:
            if self._stopped is None:
                self._stopped = threading.Event()
            return self._stopped

    def cancel(self) -> None:
        """Make the running step's next Progress call raise Cancelled."""
        self.cancelled = True
        self.stopped.set()
        self.poke()

    def halt(self) -> BaseException:
        """What the next Progress call raises once `cancelled` is set."""
        if self.interrupt is None or self.stopped.is_set():  # a cancel outranks a timeout
            return Cancelled("execution cancelled")
        return self.interrupt

    def poke(self) -> None:
        """Make the running step's next Progress call look at the clock.

        `advance` checks the clock only every so many items, a stride that grows
        while items are fast; if items then slow down, a poke every interval
        keeps updates flowing (tqdm uses a monitor thread for the same reason).
        """
        progress = self.progress
        if progress is not None:
            progress._check_at = -1

    def keep_fresh(self) -> Callable[[], None]:
        """Poke once per interval from the running event loop; returns what stops it.

        Only a stride above 1 makes `advance` skip the clock, so at stride 1 the
        pokes pause until `stride_grew` resumes them: a step reporting now and then
        does not wake the loop every 10 ms (on a VM each wake-up costs ~50 µs of CPU).
        """
        import asyncio  # here: declaring a pipeline, which imports this module, needs no loop

        loop = asyncio.get_running_loop()
        period = max(self.interval, MIN_POKE_PERIOD)
        handle: asyncio.TimerHandle | None = None
        stopped = False

        def poke_and_again() -> None:
            nonlocal handle
            handle = None
            if not self._needs_poke():
                # Say so first, then look again: a stride growing meanwhile on the
                # step's thread is seen here, or sees `_resume` there.
                self._resume = resume
                if not self._needs_poke():
                    return
                self._resume = None
            self.poke()
            handle = loop.call_later(period, poke_and_again)

        def arm() -> None:
            nonlocal handle
            if handle is None and not stopped:
                handle = loop.call_later(period, poke_and_again)

        def resume() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to poke
                loop.call_soon_threadsafe(arm)

        def stop() -> None:
            nonlocal stopped
            stopped = True
            self._resume = None
            if handle is not None:
                handle.cancel()

        arm()
        return stop

    def _needs_poke(self) -> bool:
        progress = self.progress
        return progress is not None and progress._stride > 1

    def stride_grew(self) -> None:
        """The running step's stride left 1: resume the pokes if they wait; from any thread."""
        resume, self._resume = self._resume, None
        if resume is not None:
            resume()


class Progress:
    """Item-level progress of the running step: `advance`, `iter`, `total`, `message`.

    `advance` bumps a counter in place and only now and then looks at the clock,
    so it costs about as much as `tqdm.update`; the `step_progress` hook fires at
    most once per throttle interval, plus once when the step ends.
    """

    __slots__ = (
        "_check_at",
        "_emit",
        "_last_tick",
        "_message",
        "_reported",
        "_stride",
        "_throttle",
        "_total",
        "done",
    )

    def __init__(self, emit: Callable[[Progress], None], throttle: Throttle | None = None) -> None:
        self.done = 0
        self._total: int | None = None
        self._message: str | None = None
        self._emit = emit
        self._throttle = throttle if throttle is not None else Throttle()
        self._stride = 1
        self._check_at = 0
        self._last_tick = perf_counter()
        self._reported = False
        self._throttle.progress = self
        self._throttle.next_at = 0.0

    @property
    def total(self) -> int | None:
        """How many items the step will process, or None while unknown."""
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"progress.total must be a non-negative int or None, got {value!r}")
        self._total = value
        self._tick()

    @property
    def message(self) -> str | None:
        """A short human-readable note on what the step is doing right now."""
        return self._message

    @message.setter
    def message(self, value: str | None) -> None:
        self._message = None if value is None else clean_text(str(value), MAX_MESSAGE_CHARS)
        self._tick()

    @property
    def cancelled(self) -> bool:
        """True once the execution was asked to stop; the next call will raise Cancelled."""
        return self._throttle.cancelled

    def advance(self, k: int = 1) -> None:
        """Count `k` more items done."""
        self.done += k
        if self.done >= self._check_at:
            self._tick()

    def iter(self, iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
        """Yield from `iterable`, counting each item once the loop body has handled it."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        if total is not None and (self._total is None or self._total < self.done + total):
            self._total = self.done + total
        self._tick()
        for item in iterable:
            yield item
            self.done += 1
            if self.done >= self._check_at:
                self._tick()

    def check(self) -> None:
        """Raise Cancelled if the execution was cancelled; for steps with nothing to count."""
        self._tick()

    def _tick(self) -> None:
        throttle = self._throttle
        if throttle.cancelled:
            raise throttle.halt()
        self._reported = True
        now = perf_counter()
        target = throttle.interval / 8 or 0.001
        gap = now - self._last_tick
        self._last_tick = now
        if gap < target / 2 and self._stride < MAX_STRIDE:
            self._stride *= 2
            if self._stride == 2:
                throttle.stride_grew()
        elif gap > target * 2 and self._stride > 1:
            self._stride //= 2
        self._check_at = self.done + self._stride
        if now >= throttle.next_at:
            throttle.next_at = now + throttle.interval
            self._emit(self)
        if throttle.cancelled:
            raise throttle.halt()

    def _finish(self) -> None:
        """The step ended: stop being the throttle's current handle, emit the final counts."""
        self._throttle.progress = None
        if self._reported:
            self._emit(self)
