"""`AsyncClient`: the progress API from async code (asyncio or trio, through anyio)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
from httpx_ws import (
    WebSocketDisconnect,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    aconnect_ws,
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
)
from .problems import unreachable
from .schemas import EventLog, ExecutionPage, LogPage, PipelineInfo
from .streams import AsyncEventStream, Follow, Reconnect, Watch

T = TypeVar("T")
Send = Callable[[AnyEvent], Awaitable[None]]


class AsyncClient:
    """A stepstream server's progress API, from async code; `async with` it, or `aclose()`.

    The same methods, types and exceptions as `Client`, awaited. `events()` and
    `watch()` return streams to use as `async with client.events(id) as events:
    async for event in events: ...` (a bare `async for` works when it runs to the end).
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
        self._http = httpx.AsyncClient(**self._settings.httpx_options())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client keeps open."""
        await self._http.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        try:
            return await self._fetch(call)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc, self._settings.timeout) from None

    async def _fetch(self, call: calls.Call[T]) -> T:
        """`_send` without turning transport errors into ServerUnavailable."""
        response = await self._http.request(
            call.method, call.path, params=call.params, content=call.content, headers=call.headers
        )
        return call.result(response, self.url)

    # -- executions --------------------------------------------------------------------

    async def submit(self, pipeline: str, /, **inputs: Any) -> ExecutionRecord:
        """Start `pipeline` with `inputs`; returns its `pending` record at once."""
        return await self._send(calls.submit(pipeline, inputs))

    async def get(self, execution_id: str) -> ExecutionRecord:
        """The execution's record: status, progress, steps, outputs or error."""
        return await self._send(calls.get(execution_id))

    async def progress(self, execution_id: str) -> ProgressSnapshot | None:
        """The execution's progress; None while it has none (pending, or never started)."""
        return await self._send(calls.progress(execution_id))

    async def list(
        self,
        status: str | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """One page of executions, newest first; pass `page.next_cursor` as `cursor` for
        the next (None on the last page). `limit` is 1 to 200."""
        return await self._send(calls.page(status, pipeline, limit, cursor))

    async def executions(
        self, status: str | None = None, pipeline: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[ExecutionRecord]:
        """Every execution matching the filters, newest first, fetched a page at a time."""
        cursor = None
        while True:
            page = await self.list(status, pipeline, page_size, cursor)
            for record in page.items:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, execution_id: str) -> ExecutionRecord:
        """Ask the execution to stop: a pending one is `cancelled` at once, a running one
        at its step's next checkpoint (the record still says `running` until then)."""
        return await self._send(calls.cancel(execution_id))

    async def replay(self, execution_id: str, after: int = 0) -> EventLog:
        """The logged events after seq `after` (`GET .../events`)."""
        return await self._send(calls.replay(execution_id, after))

    async def logs(self, execution_id: str, after: int = 0) -> LogPage:
        """What the steps printed and logged, the lines numbered above `after` (`GET .../logs`);
        the server keeps each execution's last lines."""
        return await self._send(calls.logs(execution_id, after))

    # -- pipelines ---------------------------------------------------------------------

    async def pipelines(self) -> builtins.list[PipelineInfo]:
        """Every pipeline the server can run, with its steps and inputs."""
        return (await self._send(calls.pipelines())).items

    async def pipeline(self, name: str) -> PipelineInfo:
        """One pipeline; UnknownPipeline (a KeyError) lists the known names."""
        return await self._send(calls.pipeline(name))

    # -- streams -----------------------------------------------------------------------

    def events(self, execution_id: str, after: int = 0) -> AsyncEventStream:
        """The execution's events as they happen, from the first after seq `after`.

        As `Client.events`: a `StatusEvent` first, then each later event once, in
        seq order, up to the terminal one; a dropped connection is resumed with
        `?after=<last seq>` for up to `retry_for` seconds.
        """
        state = Follow(execution_id, after)
        return AsyncEventStream(lambda send: self._stream(state, send))

    def watch(self, ids: builtins.list[str] | None = None) -> AsyncEventStream:
        """Events of every execution (or of the listed ids), as `Client.watch`.

        On a 1008 close (the reader fell too far behind, events were dropped) or a
        dropped connection, it reconnects, re-reads what it missed (each unfinished
        execution's events, and without ids the executions created meanwhile), and
        goes on.
        """
        state = Watch(ids)
        return AsyncEventStream(lambda send: self._stream(state, send))

    async def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionRecord:
        """The final record once the execution has finished; TimeoutError after `timeout`
        seconds (None: no limit)."""
        try:
            with anyio.fail_after(timeout):
                async with self.events(execution_id) as events:
                    async for _ in events:
                        pass
        except TimeoutError:
            record = await self.get(execution_id)
            raise TimeoutError(
                f"execution {execution_id} is still {record.status} after {timeout:g}s"
            ) from None
        return await self.get(execution_id)

    async def _stream(self, state: Follow | Watch, send: Send) -> None:
        reconnect = Reconnect(self.url, self._settings.retry_for)
        options = self._settings.ws_options()
        if isinstance(state, Watch) and state.ids is None and not state.began:
            state.begin((await self.list(limit=1)).items)
        while not state.done:
            # httpx-ws wraps what escapes its session in an exception group, so each
            # outcome is caught inside the session and acted on outside it.
            outcome: BaseException | None = None
            try:
                async with aconnect_ws(
                    state.path, self._http, params=state.params(), **options
                ) as ws:
                    state.connected()
                    try:
                        if isinstance(state, Watch) and state.resync:
                            await self._catch_up(state, send)
                        while not state.done:
                            event = decode(await ws.receive_text(), self.url)
                            reconnect.received()
                            if state.accept(event):
                                await send(event)
                    except Exception as exc:
                        outcome = exc
            except* (httpx.TransportError, WebSocketNetworkError, WebSocketUpgradeError) as group:
                outcome = group.exceptions[0]
            if isinstance(outcome, WebSocketDisconnect):
                state.closed(outcome.code, outcome.reason, self.url)
                reason = f"the server closed the stream ({outcome.code} {outcome.reason})".rstrip()
            elif isinstance(outcome, WebSocketUpgradeError):
                raise not_a_stream(self.url, state.path, outcome.response)
            elif isinstance(outcome, httpx.TransportError | WebSocketNetworkError):
                if isinstance(state, Watch):
                    state.dropped()
                reason = (
                    unreachable(self.url, outcome, self._settings.timeout).detail
                    if isinstance(outcome, httpx.TransportError)
                    else "the connection dropped"
                )
            elif outcome is not None:
                raise outcome
            if state.done:
                return
            await anyio.sleep(reconnect.pause(reason))

    async def _catch_up(self, watch: Watch, send: Send) -> None:
        """What a new watch connection cannot tell: the events missed while disconnected."""
        stale = watch.stale()
        if watch.ids is None:
            cursor = None
            while True:
                page = await self._fetch(calls.page(None, None, calls.MAX_PAGE, cursor))
                fresh, more = watch.fresh(page.items)
                stale += fresh
                if not more or page.next_cursor is None:
                    break
                cursor = page.next_cursor
        for execution_id in sorted(set(stale)):
            try:
                log = await self._fetch(calls.replay(execution_id, watch.last.get(execution_id, 0)))
            except UnknownExecution:  # pruned meanwhile
                continue
            for event in log.events:
                if watch.accept(event):
                    await send(event)
        watch.resync = False
