"""Many subscribers: a hundred WebSockets on one execution all get its terminal message.

A slow subscriber and clients that drop their connection need real sockets:
tests/e2e/test_ws_sockets.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

SUBSCRIBERS = 100

pytestmark = pytest.mark.anyio


async def test_a_hundred_subscribers_all_receive_the_terminal_message(server: Any) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(execution_id, "running")
    ready = 0
    all_ready = asyncio.Event()

    async def monitor() -> tuple[list[dict[str, Any]], int]:
        nonlocal ready
        async with server.progress_ws(execution_id) as ws:
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
        assert server.subscribers(execution_id) == SUBSCRIBERS
        server.open_gate(gate)
        results = await everyone
    finally:
        everyone.cancel()
        connected.cancel()
    final = (await server.events(execution_id))[-1]
    assert final["type"] == "completed"
    for messages, code in results:
        assert code == 1000
        assert messages[0]["type"] == "status"
        assert messages[-1] == final
        assert [m["type"] for m in messages].count("completed") == 1
    await server.wait_until(lambda: server.subscribers(execution_id) == 0, "subscriptions to end")
