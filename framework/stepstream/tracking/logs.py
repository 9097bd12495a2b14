"""Capturing what steps print and log, per execution and per step, never mixing two executions.

Two context variables say which execution and which step the running code
belongs to: the runner sets the execution in its task, and the step around each
step call; asyncio copies them into tasks a step starts and anyio into the
worker thread of sync steps, so two executions (or two steps) running at once
each see their own. Only code inside a step is captured. The root logger gets
one handler, and sys.stdout and sys.stderr one proxy each, installed once per
process: what they get while a step runs goes to that execution's
`LogBuffer`, everything else passes through untouched.

A buffer batches lines and hands them to the event loop at most once per
interval; there they are kept in the store (its last `keep` lines) and sent to
the followers that asked for logs. So a step printing in a tight loop costs a
lock and a list append per line, never a store write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from ..model.events import LogEvent, LogLine, LogStream
from ..model.values import MAX_MESSAGE_CHARS, clean_text

if TYPE_CHECKING:
    from .recorder import LiveExecution

FLUSH_INTERVAL = 0.05  # seconds lines wait before they are kept and sent
LINE_CHARS = 4 * MAX_MESSAGE_CHARS  # a longer line is cut


class LogBuffer:
    """One execution's captured lines on their way to its store and followers."""

    def __init__(self, live: LiveExecution, keep: int) -> None:
        self.live = live
        self._keep = keep
        self._lock = threading.Lock()
        self._pending: list[LogLine] = []
        self._partial: dict[str, str] = {}  # per stream: text written since its last newline
        self._next = 1
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._scheduled = False

    def write(self, stream: LogStream, text: str) -> None:
        """Text printed to stdout or stderr: complete lines become log lines."""
        with self._lock:
            text = self._partial.pop(stream, "") + text
            *lines, rest = text.split("\n")
            if rest:
                self._partial[stream] = rest
            for line in lines:
                self._add(stream, line.rstrip("\r"), None)

    def log(self, message: str, level: str) -> None:
        """A logging record's formatted message, one line or several."""
        with self._lock:
            self._add("log", message, level)

    def _add(self, stream: LogStream, message: str, level: str | None) -> None:
        """Queue one line (lock held); the oldest waiting ones go beyond `keep`."""
        self._pending.append(
            LogLine(
                n=self._next,
                at=datetime.now(UTC),
                stream=stream,
                message=clean_text(message, LINE_CHARS),
                step=STEP.get(),
                level=level,
            )
        )
        self._next += 1
        if len(self._pending) > self._keep:
            del self._pending[: -self._keep]
        if not self._scheduled:
            self._scheduled = True
            if threading.get_ident() == self._loop_thread:
                self._loop.call_later(FLUSH_INTERVAL, self.flush)
            else:
                self._loop.call_soon_threadsafe(self._loop.call_later, FLUSH_INTERVAL, self.flush)

    def flush(self, *, end: bool = False) -> None:
        """Keep and send what is waiting; on the event loop. `end` also takes partial lines."""
        with self._lock:
            if end:
                for stream, rest in self._partial.items():
                    self._add(stream, rest, None)  # type: ignore[arg-type]
                self._partial.clear()
            lines, self._pending = self._pending, []
            self._scheduled = False
        if not lines:
            return
        live = self.live
        live.store.append_logs(live.execution_id, lines, self._keep)
        live.channel.deliver_logs(
            LogEvent(execution_id=live.execution_id, seq=live.record.last_seq, lines=lines)
        )


CURRENT: contextvars.ContextVar[LogBuffer | None] = contextvars.ContextVar(
    "stepstream_log_buffer", default=None
)
STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("stepstream_step", default=None)


def _capturing_buffer() -> LogBuffer | None:
    """The buffer of the execution whose step runs in this context, if one does."""
    return CURRENT.get() if STEP.get() is not None else None


def outside_steps(record: logging.LogRecord) -> bool:
    """A logging filter for other handlers: what a step logs is captured, not shown twice."""
    return _capturing_buffer() is None


class _Capture(logging.Handler):
    """The root logger's handler: records made while a step runs go to its execution."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _capturing_buffer()
        if buffer is not None:
            try:
                buffer.log(self.format(record), record.levelname)
            except Exception:
                self.handleError(record)


class _StreamProxy:
    """sys.stdout or sys.stderr: a step's writes go to its execution, the rest pass through."""

    def __init__(self, wrapped: IO[str], stream: LogStream) -> None:
        self._wrapped = wrapped
        self._stream = stream

    def write(self, text: str) -> int:
        buffer = _capturing_buffer()
        if buffer is None:
            return self._wrapped.write(text)
        buffer.write(self._stream, text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


_install_lock = threading.Lock()
_handler: _Capture | None = None


def install() -> None:
    """Route step output to log buffers: once per process, and again if stdout was replaced."""
    global _handler
    with _install_lock:
        if _handler is None:
            _handler = _Capture()
            _handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            logging.getLogger().addHandler(_handler)
        for name, stream in (("stdout", "stdout"), ("stderr", "stderr")):
            current = getattr(sys, name)
            if not isinstance(current, _StreamProxy):
                setattr(sys, name, _StreamProxy(current, stream))  # type: ignore[arg-type]


def capturing(buffer: LogBuffer) -> Callable[[], None]:
    """Make `buffer` the execution's in this context; returns what undoes it."""
    token = CURRENT.set(buffer)
    return lambda: CURRENT.reset(token)
