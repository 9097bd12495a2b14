"""`Client`: the progress API from blocking code, with the framework's types and exceptions."""

from __future__ import annotations

import builtins
import queue
import time
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

import httpx
from httpx_ws import (
    WebSocketDisconnect,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    connect_ws,
)

from ..errors import UnknownExecution
from ..model.events import AnyEvent, ExecutionRecord, ProgressSnapshot
from . import calls
from .connection import (
    DEFAULT_RETRY_FOR,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    Settings,
    decode,
    not_a_stream,
    timed_out,
)
from .problems import unreachable
from .schemas import EventLog, ExecutionPage, LogPage, PipelineInfo
from .streams import EventStream, Follow, Reconnect, Watch

T = TypeVar("T")


class Client:
    """A stepstream server's progress API, from blocking code.

    Every method answers with the framework's msgspec types (`ExecutionRecord`,
    `ProgressSnapshot`, the event Structs) and raises the framework's exceptions:
    `UnknownExecution` (404), `UnknownPipeline` (404, a KeyError), `InputError`
    with `.problems` per field (422), `ExecutionFinished` or `ExecutionElsewhere`
    (409), `StoreError` (503) and `ServerUnavailable` for a server that is not
    there, a missing or wrong token (401) or any other answer it cannot use.
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> None:
        self._settings = Settings(url, token, timeout, retry_for)
        self.url = self._settings.url
        self._http = httpx.Client(**self._settings.httpx_options())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections this client keeps open."""
        self._http.close()

    def _send(self, call: calls.Call[T]) -> T:
        try:
            return self._fetch(call)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc, self._settings.timeout) from None

    def _fetch(self, call: calls.Call[T]) -> T:
        """`_send` without turning transport errors into ServerUnavailable."""
        response = self._http.request(
            call.method, call.path, params=call.params, content=call.content, headers=call.headers
        )
        return call.result(response, self.url)

    # -- executions --------------------------------------------------------------------

    def submit(self, pipeline: str, /, **inputs: Any) -> ExecutionRecord:
        """Start `pipeline` with `inputs`; returns its `pending` record at once."""
        return self._send(calls.submit(pipeline, inputs))

    def get(self, execution_id: str) -> ExecutionRecord:
        """The execution's record: status, progress, steps, outputs or error."""
        return self._send(calls.get(execution_id))

    def progress(self, execution_id: str) -> ProgressSnapshot | None:
        """The execution's progress; None while it has none (pending, or never started)."""
        return self._send(calls.progress(execution_id))

    def list(
        self,
        status: str | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """One page of executions, newest first; pass `page.next_cursor` as `cursor` for
        the next (None on the last page). `limit` is 1 to 200."""
        return self._send(calls.page(status, pipeline, limit, cursor))

    def executions(
        self, status: str | None = None, pipeline: str | None = None, *, page_size: int = 100
    ) -> Iterator[ExecutionRecord]:
        """Every execution matching the filters, newest first, fetched a page at a time."""
        cursor = None
        while True:
            page = self.list(status, pipeline, page_size, cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, execution_id: str) -> ExecutionRecord:
        """Ask the execution to stop: a pending one is `cancelled` at once, a running one
        at its step's next checkpoint (the record still says `running` until then)."""
        return self._send(calls.cancel(execution_id))

    def replay(self, execution_id: str, after: int = 0) -> EventLog:
        """The logged events after seq `after` (`GET .../events`): lifecycle events and the
        latest progress between them."""
        return self._send(calls.replay(execution_id, after))

    def logs(self, execution_id: str, after: int = 0) -> LogPage:
        """What the steps printed and logged, the lines numbered above `after` (`GET .../logs`);
        the server keeps each execution's last lines."""
        return self._send(calls.logs(execution_id, after))

    # -- pipelines ---------------------------------------------------------------------

    def pipelines(self) -> builtins.list[PipelineInfo]:
        """Every pipeline the server can run, with its steps and inputs."""
        return self._send(calls.pipelines()).items

    def pipeline(self, name: str) -> PipelineInfo:
        """One pipeline; UnknownPipeline (a KeyError) lists the known names."""
        return self._send(calls.pipeline(name))

    # -- streams -----------------------------------------------------------------------

    def events(self, execution_id: str, after: int = 0) -> EventStream:
        """The execution's events as they happen, from the first after seq `after`.

        A `StatusEvent` comes first (where the execution stood at `after`), then
        each later event once, in seq order, ending after the terminal one
        (`CompletedEvent`, `FailedEvent` or `CancelledEvent`). If the connection
        drops, the stream reconnects with `?after=<last seq>`, for up to
        `retry_for` seconds, and goes on with nothing repeated and no lifecycle
        event missed. Use `with` to leave it before its end.
        """
        return EventStream(self._stream(Follow(execution_id, after)))

    def watch(self, ids: builtins.list[str] | None = None) -> EventStream:
        """Events of every execution (or of the listed ids), tagged with `execution_id`.

        First a `StatusEvent` for each listed id (an `ErrorEvent` for an unknown
        one) or, without ids, for each unfinished execution; then every event as it
        happens, and new executions as they are created. With ids it ends once each
        has finished; without, it runs until closed. When the server closes it with
        1008 (the reader fell too far behind and events were dropped), or the
        connection drops, it reconnects, then re-reads what it missed before going
        on: the events of each execution it saw unfinished (`GET .../events?after=`)
        and, without ids, the executions created meanwhile.
        """
        return EventStream(self._stream(Watch(ids)))

    def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionRecord:
        """Block until the execution has finished; its final record. TimeoutError after
        `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with EventStream(self._stream(Follow(execution_id), deadline)) as events:
                for _ in events:
                    pass
        except TimeoutError:
            record = self.get(execution_id)
            raise TimeoutError(
                f"execution {execution_id} is still {record.status} after {timeout:g}s"
            ) from None
        return self.get(execution_id)

    def _stream(
        self, state: Follow | Watch, deadline: float | None = None
    ) -> Generator[AnyEvent, None, None]:
        reconnect = Reconnect(self.url, self._settings.retry_for)
        options = self._settings.ws_options()
        if isinstance(state, Watch) and state.ids is None and not state.began:
            state.begin(self.list(limit=1).items)
        while not state.done:
            try:
                with connect_ws(state.path, self._http, params=state.params(), **options) as ws:
                    state.connected()
                    if isinstance(state, Watch) and state.resync:
                        yield from self._catch_up(state)
                    while not state.done:
                        event = decode(ws.receive_text(timeout=_remaining(deadline)), self.url)
                        reconnect.received()
                        if state.accept(event):
                            yield event
                    return
            except WebSocketDisconnect as exc:
                state.closed(exc.code, exc.reason, self.url)
                reason = f"the server closed the stream ({exc.code} {exc.reason})".rstrip()
            except queue.Empty:
                raise timed_out(state) from None
            except WebSocketUpgradeError as exc:
                raise not_a_stream(self.url, state.path, exc.response) from None
            except (WebSocketNetworkError, httpx.TransportError) as exc:
                if isinstance(state, Watch):
                    state.dropped()
                reason = (
                    unreachable(self.url, exc, self._settings.timeout).detail
                    if isinstance(exc, httpx.TransportError)
                    else "the connection dropped"
                )
            if state.done:
                return
            pause = reconnect.pause(reason)
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= pause:
                raise timed_out(state)
            time.sleep(pause)

    def _catch_up(self, watch: Watch) -> Iterator[AnyEvent]:
        """What a new watch connection cannot tell: the events missed while disconnected."""
        stale = watch.stale()
        if watch.ids is None:
            cursor = None
            while True:
                page = self._fetch(calls.page(None, None, calls.MAX_PAGE, cursor))
                fresh, more = watch.fresh(page.items)
                stale += fresh
                if not more or page.next_cursor is None:
                    break
                cursor = page.next_cursor
        for execution_id in sorted(set(stale)):
            try:
                log = self._fetch(calls.replay(execution_id, watch.last.get(execution_id, 0)))
            except UnknownExecution:  # pruned meanwhile
                continue
            for event in log.events:
                if watch.accept(event):
                    yield event
        watch.resync = False


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
