"""Fan-out on the subscribers' loop: a busy step thread pays once per event, not per reader.

A sync step publishes from its worker thread. Pushing each event to a hundred
subscriptions from there costs a hundred wake-ups of the event loop, all paid
while the step holds the GIL. Instead the step thread hands each event over
once; the loop delivers it to every subscriber. Progress waiting for the loop is
coalesced (latest wins); lifecycle events queue in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .events import Event, ProgressEvent


class LoopHandoff:
    """One execution's events on their way from a worker thread to the event loop."""

    __slots__ = ("_deliver", "_events", "_lock", "_loop", "_loop_thread", "_scheduled")

    def __init__(self, deliver: Callable[[Event], None]) -> None:
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._scheduled = False

    @classmethod
    def on_running_loop(cls, deliver: Callable[[Event], None]) -> LoopHandoff | None:
        """A handoff to the running loop; None outside one, where events are delivered in place."""
        try:
            return cls(deliver)
        except RuntimeError:
            return None

    def send(self, event: Event) -> None:
        """Deliver now when on the loop's thread (after what is waiting), else hand over."""
        if threading.get_ident() == self._loop_thread:
            if self._scheduled:
                self._drain()
            self._deliver(event)
            return
        with self._lock:
            events = self._events
            if events and type(event) is ProgressEvent and type(events[-1]) is ProgressEvent:
                events[-1] = event
            else:
                events.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody reads there any more
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
            self._scheduled = False
        for event in events:
            self._deliver(event)
