"""Following one execution: replay what the follower missed from the store, then go live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UnknownExecution
from ..model.events import LogEvent
from ..model.fold import status_at, status_of

if TYPE_CHECKING:
    from ..stores import ExecutionStore
    from .broadcast import Broadcaster
    from .subscriptions import Subscription


def subscribe(
    store: ExecutionStore,
    broadcaster: Broadcaster,
    execution_id: str,
    after: int | None = None,
    *,
    logs: bool = False,
) -> Subscription:
    """`subscription.status` first, then every later event; raises UnknownExecution.

    With `after`, events with a greater seq are replayed before going live;
    without it, only the terminal event is replayed for a finished execution.
    With `logs`, the captured lines kept so far come first (one LogEvent), then
    new ones as they are captured.
    The subscription is registered before the store is read: the recorder keeps
    an event before it publishes it, so each event is replayed, delivered live,
    or both (and then deduplicated by seq), never neither.
    """
    subscription = broadcaster.subscribe(execution_id, logs=logs)
    try:
        record = store.get(execution_id)
        if record is None:
            raise UnknownExecution(execution_id)
        last_seq = record.last_seq
        if after is None:  # now, plus the end of a finished execution
            after = last_seq - 1 if record.finished else last_seq
            status = status_of(record, seq=after)
            replay = store.events(execution_id, after) if record.finished else []
        else:  # a resume: the status must not be ahead of the events replayed after it
            after = max(0, min(after, last_seq))
            log = store.events(execution_id, 0) if after < last_seq else []
            replay = [e for e in log if e.seq > after]
            status = status_at(record, log, after) if replay else status_of(record, seq=after)
        ended = record.finished and not replay  # the caller saw its end: nothing more will come
        lines = store.logs(execution_id) if logs else []
        if lines:
            replay = [LogEvent(execution_id=execution_id, seq=status.seq, lines=lines), *replay]
        subscription.begin(status, replay)
    except BaseException:
        subscription.close()
        raise
    if ended:
        subscription.end_after_replay()
    return subscription
