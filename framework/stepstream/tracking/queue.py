"""A queue of events for one reader, coalescing progress by the one rule of `model.fold`.

Events of many executions may wait in one queue (a watcher). Each execution's
latest progress event waits in a slot of its own that a newer progress event of
that execution takes over in place (`absorbing` the step changes of the one it
replaces), until a lifecycle event of the same execution closes it: exactly
`supersedes` applied per execution, so a slow reader costs memory in lifecycle
events and step states, not in progress updates.
"""

from __future__ import annotations

from collections import deque

from ..model.events import Event
from ..model.fold import absorbing, replaceable, supersedes


class _Slot:
    """The place in the queue of one execution's latest progress event."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event


class EventQueue:
    """FIFO of events with per-execution progress coalescing; not thread-safe on its own."""

    __slots__ = ("_items", "_open")

    def __init__(self) -> None:
        self._items: deque[Event | _Slot] = deque()
        self._open: dict[str, _Slot] = {}

    def push(self, event: Event) -> bool:
        """Queue `event`; False when it only replaced a waiting progress event (no growth)."""
        key = event.execution_id
        slot = self._open.get(key)
        if slot is not None and supersedes(event, slot.event):
            slot.event = absorbing(event, slot.event)  # type: ignore[arg-type]
            return False
        if replaceable(event):
            slot = self._open[key] = _Slot(event)
            self._items.append(slot)
        else:
            self._open.pop(key, None)
            self._items.append(event)
        return True

    def pop(self) -> Event | None:
        """The oldest waiting event, or None."""
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is _Slot:
            if self._open.get(item.event.execution_id) is item:
                del self._open[item.event.execution_id]
            return item.event
        return item

    def drain(self) -> list[Event]:
        """Every waiting event, oldest first; the queue is left empty."""
        events = [item.event if type(item) is _Slot else item for item in self._items]
        self.clear()
        return events

    def clear(self) -> None:
        """Drop everything waiting."""
        self._items.clear()
        self._open.clear()

    def __len__(self) -> int:
        return len(self._items)
