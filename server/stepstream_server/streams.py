"""The WebSockets: one execution's progress stream, and one connection watching many executions.

Both are fed by the engine's subscriptions, which buffer per subscriber, so a
slow client never holds up the pipeline or another client. While a client is
caught up, its events skip the buffer and its task: the publisher writes each
event's frame, built once, straight to its socket (direct.py); a client whose
socket cannot take it at once falls back to its buffer and task. Litestar's
`send_websocket_stream` listens for the client going away while it sends, so a
subscription is freed at once, even while nothing is being sent. What reads the
store runs on a worker thread (`off_loop`), so a slow disk never stalls the
other clients.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

import anyio
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import send_websocket_stream
from litestar.params import FromPath

from stepstream import (
    Engine,
    ErrorEvent,
    Event,
    ExecutionRecord,
    Status,
    StatusEvent,
    Subscription,
    SubscriptionOverflow,
    UnknownExecution,
    encode,
    status_of,
)

from .dependencies import OffLoop
from .direct import direct_writer
from .params import BadParameter, parse_after

CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008
CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_EXECUTION = 4404
PAGE = 200
MAX_WATCHED = 1_000  # ids one watch may list: each costs a store read when it connects

# uvicorn raises its ClientDisconnected (an OSError) when sending to a closed socket.
GONE = (WebSocketDisconnect, OSError)
# A close frame's reason has at most 123 bytes.
RESYNC = "too far behind, events were dropped: read GET /api/v1/executions, then watch again"


_last_sent: tuple[Event | None, str] = (None, "")


async def _send(socket: WebSocket, event: Event) -> None:
    """Send one event as JSON text, encoded once for the many subscribers that send it in turn."""
    global _last_sent
    last, text = _last_sent
    if last is not event:
        text = encode(event).decode()
        _last_sent = (event, text)
    await socket.send_text(text)


async def _stream(socket: WebSocket, events: AsyncIterator[Event]) -> bool:
    """Send every event until they end or the client leaves; True when the client is still there."""
    gone = False
    try:
        await send_websocket_stream(
            socket,
            events,  # type: ignore[arg-type]
            close=False,
            send_handler=_send,
            listen_for_disconnect=True,
            warn_on_data_discard=False,
        )
    except* GONE:
        gone = True
    return not gone and socket.connection_state != "disconnect"


async def _close(socket: WebSocket, code: int, reason: str | None = None) -> None:
    with contextlib.suppress(*GONE):
        await socket.close(code=code, reason=reason)


async def _refuse(socket: WebSocket, execution_id: str, message: str, code: int) -> None:
    """One `error` message, then close with an application code."""
    with contextlib.suppress(*GONE):
        await _send(socket, ErrorEvent(execution_id=execution_id, seq=0, message=message))
    await _close(socket, code, message.encode()[:120].decode(errors="ignore"))


async def _status_then_events(subscription: Subscription) -> AsyncIterator[Event]:
    assert subscription.status is not None
    yield subscription.status
    async for event in subscription:
        yield event


@websocket("/executions/{execution_id:str}/progress/ws")
async def progress_stream(
    socket: WebSocket,
    engine: NamedDependency[Engine],
    off_loop: NamedDependency[OffLoop],
    execution_id: FromPath[str],
) -> None:
    """`status` first, then every event up to exactly one terminal one, then close 1000."""
    await socket.accept()
    raw_after = socket.query_params.get("after")
    try:  # the REST route's parser: `?after=` means the same on both
        after = None if raw_after is None else parse_after(raw_after)
    except BadParameter as exc:
        await _refuse(socket, execution_id, str(exc), CLOSE_BAD_REQUEST)
        return
    logs = _wants_logs(socket)
    try:
        # Shielded: a subscription made must reach the `finally` below that frees it.
        with anyio.CancelScope(shield=True):
            subscription = await off_loop(
                functools.partial(engine.subscribe, execution_id, after, logs=logs)
            )
    except UnknownExecution as exc:
        await _refuse(socket, execution_id, str(exc), CLOSE_UNKNOWN_EXECUTION)
        return
    subscription.send_now = direct_writer(socket)
    try:
        async with contextlib.aclosing(_status_then_events(subscription)) as events:
            if await _stream(socket, events):
                await _close(socket, CLOSE_NORMAL)
    finally:
        subscription.close()


def _wants_logs(socket: WebSocket) -> bool:
    """`?logs=1`: captured lines come too, as `log` messages; seed clients never ask."""
    return socket.query_params.get("logs", "").lower() in ("1", "true", "yes")


def _parse_ids(raw: str | None) -> list[str]:
    if not raw:
        return []
    return list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def _initial_statuses(engine: Engine, ids: list[str]) -> list[Event]:
    """A status per listed id (an error for an unknown one), or per unfinished execution."""
    if ids:
        found: list[Event] = []
        for execution_id in ids:
            try:
                record = engine.get(execution_id)
            except UnknownExecution as exc:
                found.append(ErrorEvent(execution_id=execution_id, seq=0, message=str(exc)))
                continue
            found.append(status_of(record, record.last_seq))
        return found
    records = _all(engine, "running") + _all(engine, "pending")
    records.sort(key=lambda r: r.execution_id)
    return [status_of(r, r.last_seq) for r in records]


def _all(engine: Engine, status: Status) -> list[ExecutionRecord]:
    """Every execution with this status, following the store's pages."""
    found: list[ExecutionRecord] = []
    cursor = None
    while True:
        page = engine.list(status=status, limit=PAGE, before=cursor)
        found.extend(page)
        if len(page) < PAGE:
            return found
        cursor = page[-1].execution_id


async def _statuses_then_events(
    watch: Subscription, engine: Engine, off_loop: OffLoop, ids: list[str]
) -> AsyncIterator[Event]:
    """The current statuses, then every event of the watched executions, until an overflow."""
    initial = await off_loop(_initial_statuses, engine, ids)
    watch.seen(e for e in initial if isinstance(e, StatusEvent))
    for event in initial:
        yield event
    with contextlib.suppress(SubscriptionOverflow):
        async for event in watch:
            yield event


@websocket("/executions/ws")
async def watch_stream(
    socket: WebSocket, engine: NamedDependency[Engine], off_loop: NamedDependency[OffLoop]
) -> None:
    """Statuses of the watched executions, then all their events; open until the client leaves.

    A client that falls so far behind that its buffer fills is closed with 1008:
    events were dropped, so it must read the executions afresh.
    """
    await socket.accept()
    ids = _parse_ids(socket.query_params.get("ids"))
    if len(ids) > MAX_WATCHED:
        message = (
            f"ids lists {len(ids)} executions; watch at most {MAX_WATCHED} per connection, "
            "or leave ids out to watch them all"
        )
        await _refuse(socket, "", message, CLOSE_BAD_REQUEST)
        return
    # Subscribe before reading the statuses so nothing falls between the two;
    # the watch drops what a status already covers.
    watch = engine.watch(frozenset(ids) if ids else None, logs=_wants_logs(socket))
    watch.send_now = direct_writer(socket)
    try:
        statuses_then_events = _statuses_then_events(watch, engine, off_loop, ids)
        async with contextlib.aclosing(statuses_then_events) as events:
            if await _stream(socket, events):  # a watch ends only when its buffer overflowed
                await _close(socket, CLOSE_POLICY_VIOLATION, RESYNC)
    finally:
        watch.close()
