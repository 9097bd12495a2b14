"""WebSockets on a real socket: what only uvicorn and TCP show, with one server per module.

A reader that stops reading fills its socket buffers, a client that vanishes
without a close frame must still be noticed, and sync clients such as
websocket-client must work. uvicorn runs in a thread beside the test's event
loop, so tests still reach the engine and the gates of tests/server/pipelines.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from websocket import create_connection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stepstream import Engine
from stepstream_server import direct
from stepstream_server.app import create_app

from cli_support import STARTUP, WAIT, assert_matches_log
from server_support import Api, make_engine

pytestmark = pytest.mark.anyio


@dataclass
class Served:
    """A uvicorn serving an engine on a loopback port."""

    base_url: str
    ws_url: str
    engine: Engine


@dataclass
class SocketServer(Api):
    """`Api` plus WebSockets from the `websockets` library, over TCP."""

    ws_url: str = field(kw_only=True)

    def ws(self, path: str, **kwargs: Any) -> connect:
        """A `websockets` connection to `path`."""
        kwargs.setdefault("open_timeout", WAIT)
        return connect(f"{self.ws_url}{path}", **kwargs)

    def progress_ws(self, execution_id: str, **kwargs: Any) -> connect:
        """The per-execution progress WebSocket."""
        return self.ws(f"/api/v1/executions/{execution_id}/progress/ws", **kwargs)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """uvicorn serving the test pipelines on a pre-bound socket, so no one takes the port first."""
    engine = make_engine()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(engine), log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", engine)
    server.should_exit = True
    thread.join(15)
    assert not thread.is_alive(), "uvicorn did not shut down within 15 s"


@pytest.fixture
async def server(served: Served) -> AsyncIterator[SocketServer]:
    """Client helpers for the module's server; after the test its executions are let finish.

    So every test starts on an engine with nothing running, as on a server of its own.
    """
    async with httpx.AsyncClient(base_url=served.base_url, timeout=WAIT) as http:
        server = SocketServer(http=http, engine=served.engine, ws_url=served.ws_url)
        try:
            yield server
        finally:
            server.open_gates()

        async def idle() -> bool:
            for status in ("pending", "running"):
                listed = await http.get("/api/v1/executions", params={"status": status})
                if listed.json()["items"]:
                    return False
            return True

        await server.wait_until(idle, "the test's executions to finish")


async def recv_json(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    """The next message as JSON; fails the test if none arrives in time."""
    with anyio.fail_after(timeout):
        message = await ws.recv()
    assert isinstance(message, str), f"expected a text frame, got {message!r}"
    return json.loads(message)


async def read_to_close(
    ws: ClientConnection, timeout: float = WAIT
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and the close code."""
    messages: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        try:
            while True:
                messages.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
    return messages, ws.close_code


async def test_a_slow_subscriber_does_not_delay_a_fast_one(server: SocketServer) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("chatty", gate_name=gate))["execution_id"]
    # max_queue=1: the slow client stops reading its socket, so the server's sends to it back
    # up; no compression, so chatty's half-megabyte messages really fill the socket buffers.
    async with server.progress_ws(execution_id, max_queue=1, compression=None) as slow:
        async with server.progress_ws(execution_id, compression=None) as fast:
            slow_status = await recv_json(slow)
            fast_status = await recv_json(fast)
            server.open_gate(gate)
            fast_messages, fast_code = await read_to_close(fast, timeout=30)
        assert fast_code == 1000
        assert fast_messages[-1]["type"] == "completed"
        assert (await server.record(execution_id))["status"] == "completed"

        slow_messages, slow_code = await read_to_close(slow, timeout=30)
    assert slow_code == 1000
    assert slow_status["type"] == "status"
    types = [m["type"] for m in slow_messages]
    if slow_status["status"] == "pending":
        assert types[0] == "started"
    assert types[-1] == "completed"
    assert set(types[:-1]) <= {"started", "progress"}
    assert types.count("started") <= 1 and types.count("completed") == 1
    log = await server.events(execution_id)
    assert_matches_log(slow_messages, log, after=slow_status["seq"])
    assert_matches_log(fast_messages, log, after=fast_status["seq"])
    assert slow_messages[-1] == fast_messages[-1] == log[-1]


async def test_subscribers_served_past_their_tasks_get_every_event_in_order(
    server: SocketServer,
) -> None:
    """Without compression, caught-up clients get frames written straight to their sockets.

    Whichever way each event went (straight out, or through the client's buffer and
    task when its socket was busy), every stream is the log's, in order, then one
    terminal message and close 1000; a watcher and a resumed stream alike.
    """
    gate = server.new_gate()
    execution_id = (await server.submit("chatty", gate_name=gate, items=60, message_size=100))[
        "execution_id"
    ]
    streams = [await server.progress_ws(execution_id, compression=None) for _ in range(20)]
    watcher = await server.ws(f"/api/v1/executions/ws?ids={execution_id}", compression=None)
    statuses = [await recv_json(ws) for ws in streams]
    watch_status = await recv_json(watcher)
    assert watch_status["type"] == "status"
    server.open_gate(gate)
    results = [await read_to_close(ws, timeout=30) for ws in streams]
    await server.wait_for(execution_id)
    log = await server.events(execution_id)
    for status, (messages, code) in zip(statuses, results, strict=True):
        assert status["type"] == "status" and code == 1000
        assert_matches_log(messages, log, after=status["seq"])
        assert [m["type"] for m in messages].count("completed") == 1
        assert messages[-1] == log[-1]
    watched: list[dict[str, Any]] = []
    while not watched or watched[-1]["type"] != "completed":
        watched.append(await recv_json(watcher))
    assert_matches_log(watched, log, after=watch_status["seq"])
    await watcher.close()
    async with server.progress_ws(execution_id, compression=None) as resumed:
        path = f"/api/v1/executions/{execution_id}/progress/ws?after=2"
        async with server.ws(path, compression=None) as after_two:
            assert (await recv_json(resumed))["type"] == "status"
            assert (await recv_json(after_two))["seq"] == 2
            assert (await read_to_close(resumed))[0] == [log[-1]]
            messages, code = await read_to_close(after_two)
    assert code == 1000
    assert_matches_log(messages, log, after=2)


async def test_disconnecting_clients_free_their_subscriptions(server: SocketServer) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(execution_id, "running")
    url = f"{server.ws_url}/api/v1/executions/{execution_id}/progress/ws"

    def count() -> int:
        return server.subscribers(execution_id)

    polite = [await server.progress_ws(execution_id) for _ in range(2)]
    abrupt = [await server.progress_ws(execution_id) for _ in range(2)]
    keeper = await server.progress_ws(execution_id)
    sync_client = create_connection(url, timeout=WAIT)
    for ws in [*polite, *abrupt, keeper]:
        assert (await recv_json(ws))["type"] == "status"
    assert '"status"' in sync_client.recv()
    assert count() == 6

    for ws in polite:
        await ws.close()
    await server.wait_until(lambda: count() == 4, "closed clients to be unsubscribed")
    for ws in abrupt:
        ws.transport.abort()  # no close frame: the TCP connection just goes away
    await server.wait_until(lambda: count() == 2, "aborted clients to be unsubscribed")
    sync_client.close()
    await server.wait_until(lambda: count() == 1, "websocket-client to be unsubscribed")

    server.open_gate(gate)
    messages, code = await read_to_close(keeper)
    assert messages[-1]["type"] == "completed"
    assert code == 1000
    await server.wait_until(lambda: count() == 0, "the last subscription to end")


async def test_disconnecting_watchers_free_their_subscriptions(server: SocketServer) -> None:
    before = server.subscribers()
    watchers = [await server.ws("/api/v1/executions/ws") for _ in range(3)]
    execution_id = (await server.submit("quick", items=1))["execution_id"]
    for ws in watchers:
        first = await recv_json(ws)
        assert first["execution_id"] == execution_id
    assert server.subscribers() == before + 3
    await watchers[0].close()
    watchers[1].transport.abort()
    await server.wait_until(
        lambda: server.subscribers() <= before + 1, "closed watchers to be unsubscribed"
    )
    await watchers[2].close()
    await server.wait_until(
        lambda: server.subscribers() == before, "the last watcher to be unsubscribed"
    )


async def test_the_seeds_websocket_client_example_works(server: SocketServer) -> None:
    execution_id = (await server.submit("quick", items=8))["execution_id"]
    ws = create_connection(
        f"{server.ws_url}/api/v1/executions/{execution_id}/progress/ws", timeout=20
    )
    seen = []
    while True:
        data = json.loads(ws.recv())
        seen.append(data["type"])
        if data["type"] == "progress":
            assert 0.0 <= data["progress"]["percentage"] <= 100.0
        elif data["type"] in ["completed", "failed", "cancelled"]:
            break
    ws.close()
    assert seen[0] == "status"
    assert seen[-1] == "completed"


async def test_frames_go_straight_to_the_socket_only_when_no_compression_was_negotiated(
    server: SocketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compressed frames differ per socket: those clients are served through Litestar."""
    built: list[int] = []
    frame_of = direct.frame_of

    def counting(event: Any) -> bytes:
        built.append(event.seq)
        return frame_of(event)

    monkeypatch.setattr(direct, "frame_of", counting)
    for compression, expect_direct in (("deflate", False), (None, True)):
        gate = server.new_gate()
        submitted = await server.submit("chatty", gate_name=gate, items=40, message_size=50)
        execution_id = submitted["execution_id"]
        async with server.progress_ws(execution_id, compression=compression) as ws:
            status = await recv_json(ws)
            server.open_gate(gate)
            messages, code = await read_to_close(ws, timeout=30)
        assert code == 1000
        assert_matches_log(messages, await server.events(execution_id), after=status["seq"])
        assert bool(built) is expect_direct, (compression, built)
