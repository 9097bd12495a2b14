"""The Redis transport: per-step cost of publishing, worker → server latency, ingest throughput.

Run:  uv run python benchmarks/bench_redis.py            (a few minutes; needs Redis on localhost)
      uv run python benchmarks/bench_redis.py --quick    (smoke run)
      REDIS_URL=redis://host:6379/0 ...                   (another Redis)

Every run uses its own key prefix and deletes its keys afterwards.

1. overhead: a 1,000-step sync chain (as in bench_core) run with `engine.run`, in
   alternating rounds with no transport and inside `publishing(engine, [redis])`. The
   pipeline's wall and process CPU time are measured up to its end (so the background
   sender's work done meanwhile counts, on the same loop and in the same process); the
   flush that follows (what was still queued at the end) is timed separately.
2. latency: 20 executions in a worker process, each step setting `progress.message` to
   `time.monotonic_ns()` 20 times a second (the engine's default 50 ms throttle), published
   to Redis; a real `stepstream serve --subscribe` ingests them; 20 WebSocket clients on
   `/api/v1/executions/{id}/progress/ws` take receive time - stamp (same host, same clock).
   Peer in the same rounds: the same 20 executions submitted to that server and run there.
3. ingest: events/s a `stepstream serve --store sqlite://` keeps, (a) from batches POSTed to
   `/api/v1/events` as the http transport sends them (500 envelopes, 2 senders) and (b) from
   Redis, a producer publishing the batches through the Redis transport as fast as it can
   while the server reads; done when the server acknowledged every entry (it acknowledges only
   what its store kept); and (c) from Redis with the server stopped (SIGSTOP) while they are
   published, timed from when it goes on: the server's own rate on a backlog. Peer: the same
   envelopes applied with `engine.receive` and flushed to a SQLite store in this process, no
   network (the ceiling of all three). Two workloads: "long" executions (10 steps of 20
   progress reports, ~165 events each, as a real publisher sent them) and "short" ones (one
   step, 4 events each), where creating each record dominates.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic_ns, perf_counter, process_time
from typing import Any

import anyio
import httpx
import msgspec
from bench_server import Child, environment, percentile, stepstream_serve, summary
from rich.console import Console
from rich.table import Table

from stepstream import Engine, Envelope, Pipeline, Progress
from stepstream.transports.publisher import publishing

THIS_FILE = Path(__file__).resolve()
RESULTS_DIR = THIS_FILE.parent / "results"
REDIS = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
STEPS = 1_000
EXECUTIONS = 20
HZ = 20
LOCAL_DELAY = 2.0  # seconds a server-run ticker waits for its WebSocket client to connect
TARGET_OVERHEAD_RATIO = 1.5
TARGET_P99_MS = 100.0
TARGET_EVENTS_PER_S = 20_000
INGEST_BATCH = 500  # envelopes per batch, as the publisher sends them
INGEST_SENDERS = 2  # POSTs in flight at once (two workers)
NO_TRANSPORT = "no transport (baseline)"
WATCHED = "an idle engine.watch, no transport"
WITH_REDIS = "publishing to Redis"


def _make_chain(n: int) -> Pipeline:
    namespace: dict[str, Any] = {}
    chain = Pipeline("chain", description=f"{n} trivial sync steps")
    for i in range(n):
        exec(f"def s{i}(x):\n    return x + 1\n", namespace)
        chain.step(name=f"s{i}")(namespace[f"s{i}"])
    return chain


ticker = Pipeline("ticker", description=f"progress stamped with monotonic_ns at {HZ} Hz")


@ticker.step
def tick(seconds: float, progress: Progress, delay: float = 0.0) -> int:
    """Each report's message is the monotonic clock when it was made (after `delay` seconds,
    in which the clients connect)."""
    n = round(seconds * HZ)
    progress.total = n
    time.sleep(delay)
    began = time.monotonic()
    for i in range(n):
        progress.message = str(monotonic_ns())
        progress.advance()
        pause = began + (i + 1) / HZ - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return n


def redis_url(prefix: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
    return f"{REDIS}?{query}"


def new_prefix(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def delete_keys(prefix: str) -> int:
    import redis

    connection = redis.Redis.from_url(REDIS)
    try:
        keys = list(connection.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            connection.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        connection.close()


def open_redis(url: str) -> Any:
    from stepstream_redis.transport import RedisTransport

    return RedisTransport.from_url(url)


# -- 1. per-step overhead ---------------------------------------------------------------------


CONNECTED = 0.05  # seconds for the publisher's connections to Redis to be made before timing


def bench_overhead(quick: bool) -> dict[str, Any]:
    rounds, warmup = (5, 1) if quick else (21, 2)
    chain = _make_chain(STEPS)
    prefix = new_prefix("overhead")
    samples: dict[str, dict[str, list[float]]] = {
        NO_TRANSPORT: {"wall": [], "cpu": []},
        WATCHED: {"wall": [], "cpu": []},
        WITH_REDIS: {"wall": [], "cpu": [], "flush": [], "events": []},
    }

    async def main() -> None:
        plain = Engine(load_entrypoints=False)
        watched = Engine(load_entrypoints=False)
        published = Engine(load_entrypoints=False)

        async def without() -> tuple[float, float]:
            gc.collect()
            wall, cpu = perf_counter(), process_time()
            record = await plain.run(chain, {"x": 0})
            wall, cpu = perf_counter() - wall, process_time() - cpu
            assert record.status == "completed"
            return wall, cpu

        async def with_watch() -> tuple[float, float]:
            """What any transport pays before sending anything: the engine feeding a watcher."""
            watch = watched.watch(bounded=False)
            gc.collect()
            wall, cpu = perf_counter(), process_time()
            record = await watched.run(chain, {"x": 0})
            wall, cpu = perf_counter() - wall, process_time() - cpu
            watch.close()
            assert record.status == "completed"
            return wall, cpu

        async def with_redis() -> tuple[float, float, float, int]:
            transport = open_redis(redis_url(prefix))
            gc.collect()
            async with publishing(published, [transport], flush_timeout=30) as publishers:
                await anyio.sleep(CONNECTED)  # a worker's connections are made once, not per step
                wall, cpu = perf_counter(), process_time()
                record = await published.run(chain, {"x": 0})
                wall, cpu = perf_counter() - wall, process_time() - cpu
                flush_began = perf_counter()
            flush = perf_counter() - flush_began
            assert record.status == "completed" and not publishers[0].left
            return wall, cpu, flush, publishers[0].delivered

        for round_no in range(warmup + rounds):
            order = [without, with_watch, with_redis]
            order = order[round_no % 3 :] + order[: round_no % 3]
            for measure in order:
                taken = await measure()
                if round_no < warmup:
                    continue
                if measure is not with_redis:
                    name = NO_TRANSPORT if measure is without else WATCHED
                    samples[name]["wall"].append(taken[0])
                    samples[name]["cpu"].append(taken[1])
                else:
                    for key, value in zip(("wall", "cpu", "flush", "events"), taken, strict=True):
                        samples[WITH_REDIS][key].append(value)

    try:
        anyio.run(main)
    finally:
        delete_keys(prefix)
    rows = {name: {k: summary(v) for k, v in taken.items()} for name, taken in samples.items()}
    base = rows[NO_TRANSPORT]
    for name in (WATCHED, WITH_REDIS):
        row = rows[name]
        row["ratio_wall"] = row["wall"]["median"] / base["wall"]["median"]
        row["ratio_cpu"] = row["cpu"]["median"] / base["cpu"]["median"]
    rows[WITH_REDIS]["ratio_to_watched_wall"] = (
        rows[WITH_REDIS]["wall"]["median"] / rows[WATCHED]["wall"]["median"]
    )
    return {"rounds": rounds, "steps": STEPS, "rows": rows}


# -- 2. latency -----------------------------------------------------------------------------


def child_worker(url: str, seconds: float) -> None:
    """Create the executions, say their ids, run them all once told to, publishing to `url`."""

    async def main() -> None:
        engine = Engine()
        transport = open_redis(url)
        async with publishing(engine, [transport], flush_timeout=10):
            jobs = [engine.create(ticker, {"seconds": seconds}) for _ in range(EXECUTIONS)]
            print("IDS " + " ".join(job.execution_id for job in jobs), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            async with anyio.create_task_group() as tasks:
                for job in jobs:
                    tasks.start_soon(engine.execute, job)
        print("DONE", flush=True)

    anyio.run(main)


class _Progress(msgspec.Struct):
    message: str | None = None


class _Message(msgspec.Struct):
    type: str
    progress: _Progress | None = None


async def _listen(ws_url: str, latencies: list[float], connected: asyncio.Event) -> None:
    import websockets

    decoder = msgspec.json.Decoder(_Message)
    seen: set[str] = set()
    async with websockets.connect(ws_url, max_size=None) as socket:
        connected.set()
        async for text in socket:
            now = monotonic_ns()
            message = decoder.decode(text)
            stamp = message.progress.message if message.progress else None
            if message.type != "status" and stamp and stamp.isdigit() and stamp not in seen:
                seen.add(stamp)
                latencies.append((now - int(stamp)) / 1e6)


async def _clients(base: str, ids: list[str]) -> tuple[list[float], list[asyncio.Task[None]]]:
    latencies: list[float] = []
    ws_base = base.replace("http://", "ws://")
    tasks = []
    for execution_id in ids:
        connected = asyncio.Event()
        url = f"{ws_base}/api/v1/executions/{execution_id}/progress/ws"
        tasks.append(asyncio.create_task(_listen(url, latencies, connected)))
        await asyncio.wait_for(connected.wait(), 30)
    return latencies, tasks


async def _known(client: httpx.AsyncClient, base: str, ids: list[str]) -> None:
    for execution_id in ids:
        deadline = time.monotonic() + 30
        while (await client.get(f"{base}/api/v1/executions/{execution_id}")).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server never learned of {execution_id}")
            await asyncio.sleep(0.02)


async def _round_redis(base: str, url: str, seconds: float, log_dir: Path, n: int) -> list[float]:
    with open(log_dir / f"worker-{n}.stderr", "w") as err:
        worker = subprocess.Popen(
            [sys.executable, str(THIS_FILE), "_worker", url, str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=log_dir,
        )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        line = await asyncio.to_thread(worker.stdout.readline)
        if not line.startswith("IDS "):
            raise RuntimeError(f"worker said {line!r}: see {log_dir}/worker-{n}.stderr")
        ids = line.split()[1:]
        async with httpx.AsyncClient() as client:
            await _known(client, base, ids)
        latencies, tasks = await _clients(base, ids)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 60)
        await asyncio.to_thread(worker.wait, 30)
        return latencies
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def _round_local(base: str, seconds: float) -> list[float]:
    """The same executions run by the server; they wait LOCAL_DELAY s for the clients first."""
    async with httpx.AsyncClient() as client:
        ids = []
        for _ in range(EXECUTIONS):
            answer = await client.post(
                f"{base}/api/v1/executions",
                json={"pipeline": "ticker", "inputs": {"seconds": seconds, "delay": LOCAL_DELAY}},
            )
            answer.raise_for_status()
            ids.append(answer.json()["execution_id"])
        latencies, tasks = await _clients(base, ids)
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 60)
        return latencies


def bench_latency(log_dir: Path, quick: bool) -> dict[str, Any]:
    rounds, seconds = (1, 3.0) if quick else (4, 8.0)
    prefix = new_prefix("latency")
    url = redis_url(prefix)
    server = Child(
        [
            str(Path(sys.executable).parent / "stepstream"),
            "serve",
            "--port",
            "0",
            "--store",
            f"sqlite:///{log_dir / 'latency.db'}",
            "--pipelines",
            str(THIS_FILE),
            "--max-concurrent",
            str(EXECUTIONS),
            "--subscribe",
            url,
        ],
        r"stepstream serving on (http://\S+)",
        log_dir,
        "latency-server",
    )
    names = {"local": "run by the server itself (peer)", "redis": "worker → Redis → server"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        base = server.start()
        for round_no in range(rounds):
            order = ["redis", "local"] if round_no % 2 == 0 else ["local", "redis"]
            for name in order:
                if name == "redis":
                    taken = asyncio.run(_round_redis(base, url, seconds, log_dir, round_no))
                else:
                    taken = asyncio.run(_round_local(base, seconds))
                taken.sort()
                runs[name].append(
                    {
                        "messages": len(taken),
                        "p50": percentile(taken, 50),
                        "p95": percentile(taken, 95),
                        "p99": percentile(taken, 99),
                        "max": taken[-1] if taken else float("nan"),
                    }
                )
    finally:
        server.stop()
        delete_keys(prefix)
    rows = {}
    for name, taken in runs.items():
        rows[names[name]] = {
            key: summary([r[key] for r in taken]) for key in ("p50", "p95", "p99", "max")
        }
        rows[names[name]]["messages"] = [r["messages"] for r in taken]
    return {"rounds": rounds, "seconds": seconds, "executions": EXECUTIONS, "hz": HZ, "rows": rows}


# -- 3. ingest --------------------------------------------------------------------------------


class _Capture:
    """A transport that keeps what the publisher sends: the batches a worker would send."""

    url = "capture://"

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    async def publish(self, envelopes: list[Envelope]) -> list[Any]:
        self.sent += envelopes
        return []

    async def aclose(self) -> None:
        pass


def recorded_envelopes(executions: int, steps: int, items: int) -> list[Envelope]:
    """What a real publisher sends for `executions` runs of a pipeline of `steps` steps each
    reporting `items` items (0.5 ms apart, every report an event), 20 executions at a time."""
    pipeline = Pipeline("ingest", description=f"{steps} steps, {items} progress reports each")
    for i in range(steps):

        def first(progress: Progress) -> int:
            for _ in progress.iter(range(items)):
                time.sleep(0.0005)
            return 1

        def step(value: int, progress: Progress) -> int:
            for _ in progress.iter(range(items)):
                time.sleep(0.0005)
            return value + 1

        pipeline.step(name=f"step{i}")(step if i else first)
    engine = Engine(load_entrypoints=False, progress_interval=0)
    capture = _Capture()

    async def main() -> None:
        async with publishing(engine, [capture], flush_timeout=60, linger=0):  # every event
            for start in range(0, executions, 20):
                async with anyio.create_task_group() as tasks:
                    for _ in range(min(20, executions - start)):
                        tasks.start_soon(engine.run, pipeline, {})

    anyio.run(main)
    return capture.sent


def renamed(envelopes: list[Envelope], tag: str) -> list[Envelope]:
    """The same envelopes, in the same order, under fresh execution ids."""

    def fresh(execution_id: str) -> str:
        return f"{execution_id}_{tag}"

    return [
        msgspec.structs.replace(
            e,
            event=msgspec.structs.replace(e.event, execution_id=fresh(e.event.execution_id)),
            record=None
            if e.record is None
            else msgspec.structs.replace(e.record, execution_id=fresh(e.record.execution_id)),
        )
        for e in envelopes
    ]


def batches(envelopes: list[Envelope]) -> list[list[Envelope]]:
    return [envelopes[i : i + INGEST_BATCH] for i in range(0, len(envelopes), INGEST_BATCH)]


def ingest_in_process(envelopes: list[Envelope], log_dir: Path, n: str) -> float:
    """The peer: engine.receive + flush into a SQLite store, per batch, no network."""
    engine = Engine(store=f"sqlite:///{log_dir / f'peer-{n}.db'}", load_entrypoints=False)
    began = perf_counter()
    for batch in batches(envelopes):
        for envelope in batch:
            engine.receive(envelope)
        engine.flush()
    rate = len(envelopes) / (perf_counter() - began)
    engine.store.close() if hasattr(engine.store, "close") else None
    return rate


async def ingest_http(base: str, envelopes: list[Envelope]) -> float:
    from stepstream.transports.wire import encode_batch

    # Each worker sends its own executions, in order, as real workers do.
    shares: list[list[Envelope]] = [[] for _ in range(INGEST_SENDERS)]
    workers: dict[str, int] = {}
    for envelope in envelopes:
        worker = workers.setdefault(envelope.event.execution_id, len(workers) % INGEST_SENDERS)
        shares[worker].append(envelope)
    headers = {"content-type": "application/json"}
    endpoint = f"{base}/api/v1/events"

    bodies = [[encode_batch(b) for b in batches(share)] for share in shares]

    async def sender(client: httpx.AsyncClient, share: list[bytes]) -> None:
        for body in share:
            answer = await client.post(endpoint, content=body, headers=headers)
            answer.raise_for_status()
            assert not answer.json()["gaps"], answer.text

    async with httpx.AsyncClient(timeout=60) as client:
        began = perf_counter()
        await asyncio.gather(*(sender(client, share) for share in bodies))
        return len(envelopes) / (perf_counter() - began)


async def ingest_redis(
    url: str, envelopes: list[Envelope], paused: int | None = None
) -> tuple[float, float]:
    """Publish every batch through the transport, then wait for the server's group to ack all.

    With `paused` (the server's pid), the server is stopped (SIGSTOP) while they are
    published and the clock starts when it goes on (SIGCONT): a backlog it catches up on,
    the server's own rate, no producer beside it.
    """
    import redis.asyncio as aredis

    transport = open_redis(url)
    settings = transport.settings
    connection = aredis.Redis.from_url(REDIS)
    prepared = batches(envelopes)
    try:
        if paused:
            os.kill(paused, signal.SIGSTOP)
        began = perf_counter()
        for batch in prepared:
            await transport.publish(batch)
        published = perf_counter() - began
        if paused:
            began = perf_counter()
            os.kill(paused, signal.SIGCONT)
        while True:
            groups = await connection.xinfo_groups(settings.stream)
            group = next(g for g in groups if g["name"].decode() == settings.group)
            if group["pending"] == 0 and group["lag"] == 0:
                break
            await asyncio.sleep(0.005)
        took = perf_counter() - began
        return len(envelopes) / took, published
    finally:
        await transport.aclose()
        await connection.aclose()


WORKLOADS = {  # name: (executions per round, full / quick; steps; items per step)
    "long": ((160, 40), 10, 20),  # about 165 events per execution
    "short": ((2000, 300), 1, 0),  # 4 events per execution: the record's creation dominates
}


def bench_ingest(log_dir: Path, quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 5
    prefix = new_prefix("ingest")
    url = redis_url(prefix, group=f"{prefix}-server")
    names = {
        "peer": "engine.receive + flush, SQLite, in process (peer)",
        "http": "POST /api/v1/events",
        "redis": "Redis, server subscribed, producer alongside",
        "backlog": "Redis, server catching up a backlog",
    }
    workloads = {}
    for workload, (executions, steps, items) in WORKLOADS.items():
        workloads[workload] = recorded_envelopes(executions[bool(quick)], steps, items)
    runs: dict[tuple[str, str], list[float]] = {(w, n): [] for w in workloads for n in names}
    publish_rates: dict[str, list[float]] = {w: [] for w in workloads}
    http_server = stepstream_serve(log_dir, "ingest-http", "sqlite")
    redis_server = stepstream_serve(log_dir, "ingest-redis", "sqlite", "--subscribe", url)
    try:
        http_base = http_server.start()
        redis_server.start()
        time.sleep(1.0)  # the subscriber makes its group
        for round_no in range(rounds):
            order = list(names)[round_no % 4 :] + list(names)[: round_no % 4]
            for workload, recorded in workloads.items():
                for name in order:
                    envelopes = renamed(recorded, f"{workload}{name}{round_no}")
                    gc.collect()
                    if name == "peer":
                        rate = ingest_in_process(envelopes, log_dir, f"{workload}{round_no}")
                    elif name == "http":
                        rate = asyncio.run(ingest_http(http_base, envelopes))
                    elif name == "redis":
                        rate, published = asyncio.run(ingest_redis(url, envelopes))
                        publish_rates[workload].append(len(envelopes) / published)
                    else:
                        pid = redis_server.proc.pid if redis_server.proc else None
                        rate, _ = asyncio.run(ingest_redis(url, envelopes, paused=pid))
                    runs[workload, name].append(rate)
    finally:
        http_server.stop()
        redis_server.stop()
        delete_keys(prefix)
    rows: dict[str, Any] = {}
    for workload, recorded in workloads.items():
        base = summary(runs[workload, "peer"])
        rows[workload] = {
            "events_per_round": len(recorded),
            "executions_per_round": len({e.event.execution_id for e in recorded}),
            "producer_rate": summary(publish_rates[workload]),
            "rows": {
                names[name]: {
                    "rate": summary(runs[workload, name]),
                    "ratio": summary(runs[workload, name])["median"] / base["median"],
                }
                for name in names
            },
        }
    return {
        "rounds": rounds,
        "batch": INGEST_BATCH,
        "http_senders": INGEST_SENDERS,
        "workloads": rows,
    }


# -- reporting --------------------------------------------------------------------------------


def _ms(s: dict[str, Any], digits: int = 2) -> str:
    half = (s["q3"] - s["q1"]) / 2
    return f"{1000 * s['median']:.{digits}f} ms ±{1000 * half:.{digits}f}"


def show(results: dict[str, Any]) -> None:
    console = Console()
    load = results["environment"]["load_average"]
    if "overhead" in results:
        o = results["overhead"]
        table = Table(
            title=f"1. {o['steps']}-step chain, {o['rounds']} alternating rounds; load {load}"
        )
        for col in ("run", "wall", "process CPU", "÷ no transport (wall, CPU)", "flush after"):
            table.add_column(col)
        for name, row in o["rows"].items():
            ratio = (
                f"{row['ratio_wall']:.2f}, {row['ratio_cpu']:.2f} (goal ≤ {TARGET_OVERHEAD_RATIO})"
                if "ratio_wall" in row
                else "1"
            )
            flush = _ms(row["flush"]) if "flush" in row else "-"
            table.add_row(name, _ms(row["wall"]), _ms(row["cpu"]), ratio, flush)
        console.print(table)
        watched = o["rows"][WITH_REDIS]["ratio_to_watched_wall"]
        console.print(f"   publishing to Redis ÷ an idle watch (wall): {watched:.2f}")
    if "latency" in results:
        lat = results["latency"]
        table = Table(
            title=f"2. progress latency, {lat['executions']} executions x {lat['hz']} Hz, "
            f"{lat['rounds']} rounds of {lat['seconds']:g} s; load {load}"
        )
        for col in ("path", "p50", "p95", f"p99 (goal < {TARGET_P99_MS:g} ms)", "max", "msgs"):
            table.add_column(col)
        for name, row in lat["rows"].items():
            table.add_row(
                name,
                *(
                    f"{row[k]['median']:.1f} ±{(row[k]['q3'] - row[k]['q1']) / 2:.1f} ms"
                    for k in ("p50", "p95", "p99", "max")
                ),
                str(row["messages"]),
            )
        console.print(table)
    if "ingest" in results:
        ing = results["ingest"]
        for workload, w in ing["workloads"].items():
            table = Table(
                title=f"3. ingest into SQLite, {workload}: {w['events_per_round']:,} events of "
                f"{w['executions_per_round']:,} executions x {ing['rounds']} rounds, batches of "
                f"{ing['batch']}; load {load}"
            )
            for col in ("path", f"events/s (goal ≥ {TARGET_EVENTS_PER_S:,})", "÷ peer"):
                table.add_column(col)
            for name, row in w["rows"].items():
                r = row["rate"]
                half = (r["q3"] - r["q1"]) / 2
                table.add_row(name, f"{r['median']:,.0f} ±{half:,.0f}", f"{row['ratio']:.2f}")
            console.print(table)
            producer = w["producer_rate"]["median"]
            console.print(f"   the Redis producer alone published {producer:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--only", action="append", choices=["overhead", "latency", "ingest"])
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    results: dict[str, Any] = {"environment": environment()}
    results["environment"]["redis"] = REDIS
    with tempfile.TemporaryDirectory(prefix="bench_redis-") as tmp:
        if not args.only or "overhead" in args.only:
            results["overhead"] = bench_overhead(args.quick)
        if not args.only or "latency" in args.only:
            results["latency"] = bench_latency(Path(tmp), args.quick)
        if not args.only or "ingest" in args.only:
            results["ingest"] = bench_ingest(Path(tmp), args.quick)
    results["environment"]["load_average_after"] = os.getloadavg()
    show(results)
    print(f"load average after: {results['environment']['load_average_after']}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"bench_redis-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    print(f"results: {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        child_worker(sys.argv[2], float(sys.argv[3]))
    else:
        main()
