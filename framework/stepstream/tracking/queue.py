"""A queue of events for one reader, coalescing progress by the one rule of `model.fold`.

Events of many executions may wait in one queue (a watcher). Each execution's
latest progress event waits in a slot of its own that a newer progress event of
that execution takes over in place (the step changes of the ones it replaces
ride along, merged as they come, so taking over costs the same however many
steps have changed meanwhile), until a lifecycle event of the same execution
closes it: exactly `supersedes` applied per execution, so a slow reader costs
memory in lifecycle events and step states, not in progress updates.
"""

from __future__ import annotations

from collections import deque

import msgspec

from ..model.events import Event, LogEvent, ProgressEvent, StepState
from ..model.fold import joined, replaceable, supersedes

MAX_WAITING_LINES = 1000  # log lines a slow reader's queue holds per execution; older ones go


class _Slot:
    """The place in the queue of one execution's latest progress event."""

    __slots__ = ("carried", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.carried: dict[int, StepState] | None = None  # step changes of replaced events

    def absorb(self, event: ProgressEvent) -> None:
        """`event` stands in for the waiting one; the step changes that one carried ride along.

        A reader that folds events (a subscriber, a transport) must get them, or a
        step's end could be lost with the progress event that told it.
        """
        previous: ProgressEvent = self.event  # type: ignore[assignment]  # a slot's progress
        carried = self.carried
        if carried is None:
            carried = self.carried = {step.index: step for step in previous.steps or ()}
        if previous.step is not None:
            carried[previous.step.index] = previous.step
        for step in event.steps or ():
            carried[step.index] = step
        if event.step is not None:
            carried.pop(event.step.index, None)
        self.event = event

    def taken(self) -> Event:
        """The waiting event as a reader gets it, with every step change it stands for."""
        if not self.carried:
            return self.event
        return msgspec.structs.replace(self.event, steps=list(self.carried.values()))


class EventQueue:
    """FIFO of events with per-execution progress coalescing; not thread-safe on its own."""

    __slots__ = ("_items", "_logs", "_open")

    def __init__(self) -> None:
        self._items: deque[Event | _Slot] = deque()
        self._open: dict[str, _Slot] = {}
        self._logs: dict[str, _Slot] = {}  # an execution's waiting log lines, joined

    def push(self, event: Event) -> bool:
        """Queue `event`; False when it joined a waiting event of its kind (no growth)."""
        key = event.execution_id
        if type(event) is LogEvent:
            waiting = self._logs.get(key)
            if waiting is not None:
                waiting.event = joined(event, waiting.event, MAX_WAITING_LINES)  # type: ignore[arg-type]
                return False
            self._logs[key] = slot = _Slot(event)
            self._items.append(slot)
            return True
        slot = self._open.get(key)
        if slot is not None and supersedes(event, slot.event):
            slot.absorb(event)  # type: ignore[arg-type]
            return False
        if replaceable(event):
            slot = self._open[key] = _Slot(event)
            self._items.append(slot)
        else:
            self._open.pop(key, None)
            self._logs.pop(key, None)
            self._items.append(event)
        return True

    def pop(self) -> Event | None:
        """The oldest waiting event, or None."""
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is _Slot:
            key = item.event.execution_id
            for slots in (self._open, self._logs):
                if slots.get(key) is item:
                    del slots[key]
            return item.taken()
        return item

    def drain(self) -> list[Event]:
        """Every waiting event, oldest first; the queue is left empty."""
        events = [item.taken() if type(item) is _Slot else item for item in self._items]
        self.clear()
        return events

    def clear(self) -> None:
        """Drop everything waiting."""
        self._items.clear()
        self._open.clear()
        self._logs.clear()

    def __len__(self) -> int:
        return len(self._items)
