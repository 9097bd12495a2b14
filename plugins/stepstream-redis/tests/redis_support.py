"""Test support on the real Redis: a proxy to cut it off, pipelines, servers, subscribing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from stepstream import Engine, ExecutionRecord, Pipeline, Progress, UnknownExecution
from stepstream.transports.publisher import Publisher, publishing
from stepstream.transports.subscriber import Subscriber

HOST, PORT = "127.0.0.1", 6379
WAIT = 30.0  # seconds: generous, since the publisher's backoff reaches 10 s (with jitter, 15)


async def wait_until(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {what or check}"
        await asyncio.sleep(0.02)
    return result


class Proxy:
    """A TCP proxy in front of Redis: `stop()` is Redis going down, `start()` back."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (on the same port as before, after a stop) and forward every connection."""
        self._server = await asyncio.start_server(self._pipe, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one, as a Redis that died would."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, PORT)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _copy(reader, upstream_writer), _copy(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):
            self._writers.discard(end)
            end.transport.abort()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.transport.abort()


def counting() -> Pipeline:
    """Two steps: the first counts `n` items, the second doubles."""
    pipeline = Pipeline("redis-count")

    @pipeline.step
    def count(progress: Progress, n: int = 5, pause: float = 0.0) -> int:
        for _ in progress.iter(range(n)):
            time.sleep(pause)
        return n

    @pipeline.step
    def double(n: int) -> dict[str, int]:
        return {"items": 2 * n}

    return pipeline


@dataclass
class Gate:
    """Holds a running step until the test opens it."""

    reached: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)


def gated(gate: Gate) -> Pipeline:
    """Three steps; the second waits at the gate, so a test can act mid-run."""
    pipeline = Pipeline("redis-gated")

    @pipeline.step
    def before(progress: Progress, n: int = 3) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    @pipeline.step
    def hold(n: int) -> int:
        gate.reached.set()
        assert gate.opened.wait(WAIT), "the test never opened the gate"
        return n

    @pipeline.step
    def after(n: int, progress: Progress) -> dict[str, int]:
        for _ in progress.iter(range(n)):
            pass
        return {"items": n}

    return pipeline


async def run_published(
    pipeline: Pipeline, inputs: dict[str, Any], transport: Any, linger: float = 0.0, **engine: Any
) -> tuple[ExecutionRecord, Publisher]:
    """A worker's run, published through `transport`; returns once all was delivered.

    Without `linger`, events go out as they come, in many batches, as a slow run's do.
    """
    worker = Engine(load_entrypoints=False, progress_interval=0, **engine)
    async with publishing(worker, [transport], flush_timeout=WAIT, linger=linger) as (publisher,):
        record = await worker.run(pipeline, inputs)
    assert publisher.left == 0, "Redis never took some events"
    return record, publisher


@contextlib.asynccontextmanager
async def subscribed(engine: Engine, transport: Any) -> AsyncIterator[Subscriber]:
    """A Subscriber receiving from `transport` into `engine` for the block."""
    subscriber = Subscriber(engine, transport)
    async with anyio.create_task_group() as tasks:
        await tasks.start(subscriber.run)
        yield subscriber
        tasks.cancel_scope.cancel()


def known(engine: Engine, execution_id: str) -> ExecutionRecord | None:
    """The engine's record of an execution, or None while it has never heard of it."""
    try:
        return engine.get(execution_id)
    except UnknownExecution:
        return None


def finished(engine: Engine, execution_id: str) -> ExecutionRecord | None:
    """The engine's record of an execution once it is finished there, else None."""
    record = known(engine, execution_id)
    return record if record is not None and record.finished else None


def stepstream_command() -> str:
    """The console script of the environment running the tests."""
    return shutil.which("stepstream") or str(Path(sys.executable).with_name("stepstream"))


@dataclass
class Served:
    """A `stepstream serve` subprocess, its URL and its output."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def serving(folder: Path, *args: str) -> Iterator[Served]:
    """`stepstream serve ARGS...` on a free port for the block, once it answers /health."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    log = folder / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSTREAM_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [stepstream_command(), "serve", "--port", str(port), *args],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(process, f"http://{HOST}:{port}", log)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert process.poll() is None, f"serve exited: {log.read_text()}"
            try:
                if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve never answered: {log.read_text()}"
            time.sleep(0.05)
        yield served
    finally:
        served.stop()
