"""Fan-out: who follows which execution, and delivery of each event to them.

A channel per execution holds its subscribers; watchers follow many executions
at once. Subscriber tuples are replaced under the lock, never mutated, so a
publisher iterates them without it (single attribute reads are atomic under
the GIL).

A sync step publishes from its worker thread. Pushing each event to a hundred
subscriptions from there costs a hundred wake-ups of the event loop, all paid
while the step holds the GIL. Instead the step thread hands each event over
once (`LoopHandoff`); the loop delivers it to every subscriber. Progress
waiting for the loop is coalesced (latest wins); lifecycle events queue in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..model.events import Event, LogEvent
from .queue import EventQueue
from .subscriptions import Subscription


class LoopHandoff:
    """One execution's events on their way from a worker thread to the event loop."""

    __slots__ = ("_deliver", "_lock", "_loop", "_loop_thread", "_queue", "_scheduled")

    def __init__(self, deliver: Callable[[Event], None]) -> None:
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._queue = EventQueue()
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
            self._queue.push(event)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody reads there any more
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            events = self._queue.drain()
            self._scheduled = False
        for event in events:
            self._deliver(event)


class Channel:
    """One execution's subscribers and, while it runs here, the handoff to their loop.

    `followed` says whether anyone (a subscriber or a watcher) would receive an
    event: publishers check it before calling `publish`, so an execution nobody
    follows pays one attribute read per event.
    """

    __slots__ = ("_broadcaster", "execution_id", "followed", "handoff", "live", "subscribers")

    def __init__(self, broadcaster: Broadcaster, execution_id: str) -> None:
        self._broadcaster = broadcaster
        self.execution_id = execution_id
        self.subscribers: tuple[Subscription, ...] = ()
        self.handoff: LoopHandoff | None = None
        self.live = False  # a recorder publishes here; kept while it does, even unfollowed
        self.followed = bool(broadcaster.watchers)

    def publish(self, event: Event) -> None:
        """Hand `event` to everyone following this execution."""
        if self.handoff is None:
            self.deliver(event)
        else:
            self.handoff.send(event)

    def deliver(self, event: Event) -> None:
        """Push `event` into each follower's buffer, on the calling thread."""
        for subscription in self.subscribers:
            subscription.push(event)
        for subscription, wanted in self._broadcaster.watchers:
            if wanted is None or event.execution_id in wanted:
                subscription.push(event)

    def deliver_logs(self, event: LogEvent) -> None:
        """Push captured lines to the followers that asked for them."""
        for subscription in self.subscribers:
            if subscription.logs:
                subscription.push(event)
        for subscription, wanted in self._broadcaster.watchers:
            if subscription.logs and (wanted is None or event.execution_id in wanted):
                subscription.push(event)

    def deliver_on_this_loop(self) -> None:
        """From now on deliver on the running event loop, whichever thread publishes."""
        self.handoff = LoopHandoff.on_running_loop(self.deliver)


class Broadcaster:
    """Every channel with a publisher or a subscriber, and every watcher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, Channel] = {}
        self.watchers: tuple[tuple[Subscription, frozenset[str] | None], ...] = ()

    def open(self, execution_id: str) -> Channel:
        """The channel a recorder publishes an execution's events on, until `close`."""
        with self._lock:
            channel = self._channel(execution_id)
            channel.live = True
            return channel

    def close(self, channel: Channel) -> None:
        """The recorder is done with the channel; it goes once its subscribers have left."""
        with self._lock:
            channel.live = False
            self._forget_if_idle(channel)

    def subscribe(self, execution_id: str, *, logs: bool = False) -> Subscription:
        """A subscription registered on the execution's channel, ready for `begin`."""
        subscription = Subscription(
            unsubscribe=self._unsubscribe, execution_id=execution_id, logs=logs
        )
        with self._lock:
            channel = self._channel(execution_id)
            channel.subscribers = (*channel.subscribers, subscription)
            channel.followed = True
        return subscription

    def watch(
        self,
        execution_ids: frozenset[str] | None = None,
        *,
        bounded: bool = True,
        logs: bool = False,
    ) -> Subscription:
        """A subscription to the events of all executions, or only of `execution_ids`."""
        subscription = Subscription(unsubscribe=self._unsubscribe, bounded=bounded, logs=logs)
        with self._lock:
            self.watchers = (*self.watchers, (subscription, execution_ids))
            self._refollow()
        return subscription

    def subscriber_count(self, execution_id: str | None = None) -> int:
        """Live subscriptions, of one execution or in all; for tests and metrics."""
        with self._lock:
            if execution_id is None:
                return len(self.watchers) + sum(len(c.subscribers) for c in self._channels.values())
            channel = self._channels.get(execution_id)
            return len(channel.subscribers) if channel else 0

    def _channel(self, execution_id: str) -> Channel:
        channel = self._channels.get(execution_id)
        if channel is None:
            channel = self._channels[execution_id] = Channel(self, execution_id)
        return channel

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            channel = self._channels.get(subscription.execution_id or "")
            if channel is not None:
                channel.subscribers = tuple(s for s in channel.subscribers if s is not subscription)
                channel.followed = bool(self.watchers or channel.subscribers)
                self._forget_if_idle(channel)
            watchers = tuple(w for w in self.watchers if w[0] is not subscription)
            if len(watchers) != len(self.watchers):
                self.watchers = watchers
                self._refollow()

    def _refollow(self) -> None:
        """Recompute every channel's `followed` (lock held); watchers come and go rarely."""
        watched = bool(self.watchers)
        for channel in self._channels.values():
            channel.followed = watched or bool(channel.subscribers)

    def _forget_if_idle(self, channel: Channel) -> None:
        if not channel.live and not channel.subscribers:
            self._channels.pop(channel.execution_id, None)
