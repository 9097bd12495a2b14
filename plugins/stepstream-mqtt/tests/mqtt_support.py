"""Test support on the real Mosquitto: a proxy to cut it off, a listener, cleanup, pipelines."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
import msgspec

from stepstream import Engine, ExecutionRecord, Pipeline, Progress, UnknownExecution
from stepstream.transports.publisher import Publisher, publishing
from stepstream.transports.subscriber import Subscriber

HOST, PORT = "127.0.0.1", 1883
WAIT = 30.0  # seconds: generous, since the publisher's backoff reaches 10 s (with jitter, 15)


async def wait_until(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {what or check}"
        await asyncio.sleep(0.02)
    return result


class Proxy:
    """A TCP proxy in front of the broker: `stop()` is the broker going down, `start()` back."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (on the same port as before, after a stop) and forward every connection."""
        self._server = await asyncio.start_server(self._pipe, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one, as a broker that died would."""
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


@dataclass
class Seen:
    """One message a listener received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        return msgspec.json.decode(self.payload)


@dataclass
class Listener:
    """A dashboard's view: every message under a topic filter, as it arrives."""

    client: aiomqtt.Client
    seen: list[Seen] = field(default_factory=list)

    def on(self, topic: str) -> list[Seen]:
        return [m for m in self.seen if m.topic == topic]

    def events(self, topic: str) -> list[dict[str, Any]]:
        """The envelopes received on an events topic, decoded."""
        return [m.json() for m in self.on(topic)]


@contextlib.asynccontextmanager
async def listening(topic_filter: str, qos: int = 1) -> AsyncIterator[Listener]:
    """A Listener subscribed to `topic_filter` for the block; retained messages come first."""
    async with aiomqtt.Client(HOST, PORT) as client:
        listener = Listener(client)
        await client.subscribe(topic_filter, qos=qos)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                listener.seen.append(Seen(str(message.topic), payload, message.qos, message.retain))

        task = asyncio.create_task(collect())
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def retained(topic_filter: str) -> list[Seen]:
    """What the broker retains under a filter, as a client connecting now gets it."""
    async with aiomqtt.Client(HOST, PORT) as client:
        probe = f"probes/{time.monotonic_ns()}"
        await client.subscribe(topic_filter, qos=1)
        await client.subscribe(probe, qos=1)
        await client.publish(probe, b"probe", qos=1)
        found = []
        async with asyncio.timeout(WAIT):
            async for message in client.messages:
                if message.topic.matches(probe):
                    return found
                payload = message.payload if isinstance(message.payload, bytes) else b""
                found.append(Seen(str(message.topic), payload, message.qos, message.retain))
    raise AssertionError("the probe never came back")


async def clear(prefix: str) -> None:
    """Remove the retained messages a test left under its prefix on the shared broker."""
    async with aiomqtt.Client(HOST, PORT) as client:
        for message in await retained(f"{prefix}/#"):
            await client.publish(message.topic, b"", qos=1, retain=True)


async def end_sessions(client_ids: set[str]) -> None:
    """End persistent sessions a test made: a clean connection under the same id does."""
    for client_id in client_ids:
        async with aiomqtt.Client(HOST, PORT, identifier=client_id, clean_session=True):
            pass


async def open_session(client_id: str, topic_filter: str, port: int = PORT, **options: Any) -> None:
    """Create a reader's persistent session, as a server that ran once before would have.

    `options` go to aiomqtt.Client: `tls_context`, `username`, `password`.
    """
    async with aiomqtt.Client(
        HOST, port, identifier=client_id, clean_session=False, **options
    ) as client:
        await client.subscribe(topic_filter, qos=1)


def counting() -> Pipeline:
    """Two steps: the first counts `n` items, the second doubles."""
    pipeline = Pipeline("mqtt-count")

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
    pipeline = Pipeline("mqtt-gated")

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


@contextlib.contextmanager
def private_broker(folder: Path, *config: str) -> Iterator[int]:
    """A Mosquitto of the test's own, configured by `config` lines, on a free port: the port."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    (folder / "mosquitto.conf").write_text(
        "\n".join([f"listener {port} {HOST}", "user root", "persistence false", *config, ""])
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                assert broker.poll() is None, broker.stderr and broker.stderr.read().decode()
                assert time.monotonic() < deadline, "the private broker never listened"
                time.sleep(0.05)
        yield port
    finally:
        broker.terminate()
        broker.wait(WAIT)


async def run_published(
    pipeline: Pipeline, inputs: dict[str, Any], transport: Any
) -> tuple[ExecutionRecord, Publisher]:
    """A worker's run, published through `transport`; returns once all was delivered."""
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with publishing(worker, [transport], flush_timeout=WAIT) as (publisher,):
        record = await worker.run(pipeline, inputs)
    assert publisher.left == 0, "the broker never confirmed some events"
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
