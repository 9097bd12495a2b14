"""Many subscribers: all get the terminal message, a slow one delays nobody, leaving frees it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websocket import create_connection

from cli_support import assert_matches_log

SUBSCRIBERS = 100

pytestmark = pytest.mark.anyio


async def test_a_hundred_subscribers_all_receive_the_terminal_message(server: Any) -> None:
    gate = server.new_gate()
    execution_id = server.submit("held", gate_name=gate)["execution_id"]
    server.wait_for(execution_id, "running")
    ready = 0
    all_ready = asyncio.Event()

    async def monitor() -> tuple[list[dict[str, Any]], int | None]:
        nonlocal ready
        async with server.progress_ws(execution_id, open_timeout=60) as ws:
            status = await server.recv_json(ws, timeout=60)
            ready += 1
            if ready == SUBSCRIBERS:
                all_ready.set()
            messages, code = await server.read_to_close(ws, timeout=60)
        return [status, *messages], code

    everyone = asyncio.gather(*(monitor() for _ in range(SUBSCRIBERS)))
    connected = asyncio.ensure_future(all_ready.wait())
    try:
        done, _ = await asyncio.wait(
            {everyone, connected}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if everyone in done:
            everyone.result()  # a subscriber failed before all were connected: show why
        assert connected in done, f"only {ready} of {SUBSCRIBERS} subscribers got their status"
        assert server.engine.subscriber_count(execution_id) == SUBSCRIBERS
        server.open_gate(gate)
        results = await everyone
    finally:
        everyone.cancel()
        connected.cancel()
    final = server.events(execution_id)[-1]
    assert final["type"] == "completed"
    for messages, code in results:
        assert code == 1000
        assert messages[0]["type"] == "status"
        assert messages[-1] == final
        assert [m["type"] for m in messages].count("completed") == 1
    await server.wait_until_async(
        lambda: server.engine.subscriber_count(execution_id) == 0, "subscriptions to end"
    )


async def test_a_slow_subscriber_does_not_delay_a_fast_one(server: Any) -> None:
    gate = server.new_gate()
    execution_id = server.submit("chatty", gate_name=gate)["execution_id"]
    # max_queue=1: the slow client stops reading its socket, so the server's sends to it back
    # up; no compression, so chatty's half-megabyte messages really fill the socket buffers.
    async with server.progress_ws(execution_id, max_queue=1, compression=None) as slow:
        async with server.progress_ws(execution_id, compression=None) as fast:
            slow_status = await server.recv_json(slow)
            fast_status = await server.recv_json(fast)
            server.open_gate(gate)
            fast_messages, fast_code = await server.read_to_close(fast, timeout=30)
        assert fast_code == 1000
        assert fast_messages[-1]["type"] == "completed"
        assert server.record(execution_id)["status"] == "completed"

        slow_messages, slow_code = await server.read_to_close(slow, timeout=30)
    assert slow_code == 1000
    assert slow_status["type"] == "status"
    types = [m["type"] for m in slow_messages]
    if slow_status["status"] == "pending":
        assert types[0] == "started"
    assert types[-1] == "completed"
    assert set(types[:-1]) <= {"started", "progress"}
    assert types.count("started") <= 1 and types.count("completed") == 1
    log = server.events(execution_id)
    assert_matches_log(slow_messages, log, after=slow_status["seq"])
    assert_matches_log(fast_messages, log, after=fast_status["seq"])
    assert slow_messages[-1] == fast_messages[-1] == log[-1]


async def test_disconnecting_clients_free_their_subscriptions(server: Any) -> None:
    gate = server.new_gate()
    execution_id = server.submit("held", gate_name=gate)["execution_id"]
    server.wait_for(execution_id, "running")
    tracker = server.engine
    url = f"{server.ws_url}/api/v1/executions/{execution_id}/progress/ws"

    def count() -> int:
        return tracker.subscriber_count(execution_id)

    polite = [await server.progress_ws(execution_id) for _ in range(2)]
    abrupt = [await server.progress_ws(execution_id) for _ in range(2)]
    keeper = await server.progress_ws(execution_id)
    sync_client = create_connection(url, timeout=20)
    for ws in [*polite, *abrupt, keeper]:
        assert (await server.recv_json(ws))["type"] == "status"
    assert '"status"' in sync_client.recv()
    assert count() == 6

    for ws in polite:
        await ws.close()
    await server.wait_until_async(lambda: count() == 4, "closed clients to be unsubscribed")
    for ws in abrupt:
        ws.transport.abort()  # no close frame: the TCP connection just goes away
    await server.wait_until_async(lambda: count() == 2, "aborted clients to be unsubscribed")
    sync_client.close()
    await server.wait_until_async(lambda: count() == 1, "websocket-client to be unsubscribed")

    server.open_gate(gate)
    messages, code = await server.read_to_close(keeper)
    assert messages[-1]["type"] == "completed"
    assert code == 1000
    await server.wait_until_async(lambda: count() == 0, "the last subscription to end")


async def test_disconnecting_watchers_free_their_subscriptions(server: Any) -> None:
    tracker = server.engine
    before = tracker.subscriber_count()
    watchers = [await server.ws("/api/v1/executions/ws") for _ in range(3)]
    execution_id = server.submit("quick", items=1)["execution_id"]
    for ws in watchers:
        first = await server.recv_json(ws)
        assert first["execution_id"] == execution_id
    assert tracker.subscriber_count() == before + 3
    await watchers[0].close()
    watchers[1].transport.abort()
    await server.wait_until_async(
        lambda: tracker.subscriber_count() <= before + 1, "closed watchers to be unsubscribed"
    )
    await watchers[2].close()
    await server.wait_until_async(
        lambda: tracker.subscriber_count() == before, "the last watcher to be unsubscribed"
    )
