"""`stepstream run --publish mqtt://...` in a worker process; a server subscribed shows its run."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from stepstream import Engine
from stepstream_server.app import create_app

from mqtt_support import WAIT, open_session, retained

pytestmark = pytest.mark.anyio

TARGET = f"{Path(__file__).with_name('worker_pipelines.py')}:tally"


def _stepstream() -> str:
    return shutil.which("stepstream") or str(Path(sys.executable).with_name("stepstream"))


async def test_a_workers_stepstream_run_shows_on_a_subscribed_server(
    url: str, prefix: str, transports
) -> None:
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    app = create_app(Engine(load_entrypoints=False), subscribe=[reader])
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as api,
    ):
        env = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_PUBLISH"}
        with anyio.fail_after(WAIT):
            worker = await anyio.run_process(
                [_stepstream(), "run", TARGET, "-i", "items=25", "--publish", url],
                env=env,
                check=False,
            )
        assert worker.returncode == 0, worker.stderr.decode()
        assert b"could not be delivered" not in worker.stderr

        async def the_workers_run() -> dict | None:
            items = (await api.get("/api/v1/executions")).json()["items"]
            return items[0] if items and items[0]["status"] == "completed" else None

        deadline = anyio.current_time() + WAIT
        while (record := await the_workers_run()) is None:
            assert anyio.current_time() < deadline, "the worker's run never completed on the server"
            await anyio.sleep(0.05)
    assert record["pipeline"] == "mqtt-tally"
    assert record["origin"]["host"] == socket.gethostname()
    assert record["origin"]["pid"] != os.getpid()  # run by the worker, not by the server
    assert record["outputs"] == {"items": 25}
    assert [s.get("items_done") for s in record["steps"]] == [25, None]
    kept = {m.topic: m.json() for m in await retained(f"{prefix}/#")}
    assert kept[f"{prefix}/executions/{record['execution_id']}/status"] == record
