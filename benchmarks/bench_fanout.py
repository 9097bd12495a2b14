"""WebSocket fan-out at a fixed rate: `stepstream serve` against a raw `websockets.broadcast`.

Run:  uv run python benchmarks/bench_fanout.py            (about 5 minutes)
      uv run python benchmarks/bench_fanout.py --quick    (smoke run, about a minute)
Options: --subscribers N (repeatable; default 100 and 1000), --rate EVENTS_PER_S, --rounds,
--window SECONDS, --store memory|sqlite (repeatable), --progress-interval SECONDS
(stepstream's, default 0), --out PATH (JSON file).

Both servers run in a process of their own on uvloop and send the same message, a
stepstream progress event whose `message` is `time.monotonic_ns()` when it was made,
at a fixed rate from a producer thread:

- peer: `websockets.asyncio.server.serve` (no compression); its thread hands each
  message to the loop, which calls `websockets.asyncio.server.broadcast`;
- stepstream: `stepstream serve --progress-interval 0` running one execution of
  `paced`, a sync step that sets `progress.message` at the same rate, subscribers on
  `/api/v1/executions/{id}/progress/ws`.

Subscribers are clients on `websockets`' sans-I/O protocol (no compression, no task
per client) on uvloop, at most `PER_CLIENT_PROCESS` per process. Once every one is
connected and a warm-up has passed, each records for `--window` seconds the latency
of every message (arrival - the stamp in it, one host clock), while the parent reads
the server's CPU time from /proc at the window's start and end. Rounds alternate
which server goes first, each on a fresh server; figures are medians over rounds ±
half the IQR, ratios are taken round by round (stepstream ÷ the peer of the round).

This file is also the pipelines file the stepstream server loads and the entry point
of the child processes (`_peer`, `_clients`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic_ns, perf_counter
from typing import Any

import msgspec
from bench_server import (
    READY,
    Child,
    broadcast_template,
    environment,
    fmt,
    percentile,
    save,
    stepstream_serve,
    summary,
)

from stepstream import Pipeline, Progress

THIS_FILE = Path(__file__).resolve()
RATE = (
    20.0  # events a second: 20,000 messages a second at 1,000 subscribers, neither side saturated
)
WINDOW = 8.0  # seconds measured per run
WARMUP = 2.0  # seconds after the last subscriber connected, before the window
PER_CLIENT_PROCESS = 500
SUBSCRIBERS = (100, 1000)
TARGET_P99_RATIO = 1.2
TARGET_CPU_RATIO = 1.5
PEER = "raw websockets.broadcast (peer)"


def ticks(rate: float, seconds: float) -> Iterator[None]:
    """Yield at `rate` a second on a fixed schedule (no drift), for `seconds`."""
    period = 1 / rate
    next_at = perf_counter()
    end = next_at + seconds
    while next_at < end:
        next_at += period
        delay = next_at - perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield


# -- the pipeline the stepstream server runs ---------------------------------------------------

paced = Pipeline("paced", description="Progress at a fixed rate, stamped with monotonic_ns")


@paced.step
def emit(rate: float, seconds: float, progress: Progress) -> int:
    """Each message is the monotonic clock as the event is made (interval 0 emits each)."""
    sent = 0
    for _ in ticks(rate, seconds):
        progress.message = str(monotonic_ns())
        sent += 1
    return sent


# -- the peer -----------------------------------------------------------------------------------


async def _peer(rate: float, template: str) -> None:
    """A raw websockets server: every connection gets every message through `broadcast`."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    head, tail = template.split("@TS@")
    connections: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    def produce(loop: asyncio.AbstractEventLoop) -> None:
        for _ in ticks(rate, math.inf):
            message = head + str(monotonic_ns()) + tail
            loop.call_soon_threadsafe(broadcast, connections, message)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        threading.Thread(target=produce, args=(asyncio.get_running_loop(),), daemon=True).start()
        print(f"{READY}http://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


def child_peer(rate: float) -> None:
    import uvloop

    uvloop.run(_peer(rate, broadcast_template()))


# -- the subscribers ----------------------------------------------------------------------------


class _Snapshot(msgspec.Struct):
    message: str | None = None


class _Message(msgspec.Struct):
    type: str
    progress: _Snapshot | None = None


_decode = msgspec.json.Decoder(_Message).decode


class _Subscriber(asyncio.Protocol):
    """One client on `websockets`' sans-I/O protocol: frames parsed in `data_received`, no task.

    A task per client woken per message made the clients, not the servers, the
    bottleneck at 1,000 subscribers on two cores; this is the cheapest faithful client.
    """

    def __init__(self, uri: str, arrived: Callable[[int, bytes], None]) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(parse_uri(uri), max_size=None)
        self.arrived = arrived
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = monotonic_ns()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.arrived(now, event.data)
            elif isinstance(event, Response) and not self.opened.done():
                if event.status_code == 101:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(RuntimeError(f"refused: {event.status_code}"))
        self._flush()  # pongs and close frames

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before opening"))

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)


async def _subscribers(target: str, count: int, window: float) -> dict[str, Any]:
    """Connect `count` clients, say READY, wait for `go` on stdin, record for `window` seconds."""
    from websockets.uri import parse_uri

    latencies: list[int] = []
    sizes: list[int] = []
    bounds = [math.inf, -math.inf]  # the window's start and end, monotonic_ns

    def arrived(now: int, raw: bytes) -> None:
        if bounds[0] <= now <= bounds[1]:
            message = _decode(raw)
            if message.progress is not None and message.progress.message:
                latencies.append(now - int(message.progress.message))
                sizes.append(len(raw))

    loop = asyncio.get_running_loop()
    uri = parse_uri(target)
    subscribers = []
    for _ in range(count):
        _, subscriber = await loop.create_connection(
            lambda: _Subscriber(target, arrived), uri.host, uri.port
        )
        await asyncio.wait_for(subscriber.opened, 60)
        subscribers.append(subscriber)
    print(READY, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu_began = time.process_time()
    bounds[:] = [monotonic_ns(), monotonic_ns() + int(window * 1e9)]
    await asyncio.sleep(window)
    return {
        "latencies_ns": latencies,
        "sizes": sizes,
        "connected": len(subscribers),
        "client_cpu_seconds": time.process_time() - cpu_began,
    }


def child_clients(target: str, count: int, window: float, out: str) -> None:
    import uvloop

    result = uvloop.run(_subscribers(target, count, window))
    Path(out).write_bytes(msgspec.json.encode(result))
    os._exit(0)  # leave the sockets to the kernel: closing a thousand politely is not measured


# -- one run ------------------------------------------------------------------------------------


def _start_paced(url: str, rate: float, seconds: float) -> str:
    import httpx

    answer = httpx.post(
        f"{url}/api/v1/executions",
        json={"pipeline": "paced", "inputs": {"rate": rate, "seconds": seconds}},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["execution_id"]


def measure(
    server: Child, target: str, subscribers: int, rate: float, window: float, log_dir: Path
) -> dict[str, Any]:
    """Attach the subscribers to a running server, then measure one window."""
    procs = []
    outs = []
    counts = [PER_CLIENT_PROCESS] * (subscribers // PER_CLIENT_PROCESS)
    if subscribers % PER_CLIENT_PROCESS:
        counts.append(subscribers % PER_CLIENT_PROCESS)
    for i, count in enumerate(counts):
        out = log_dir / f"clients-{server.name}-{i}.json"
        outs.append(out)
        argv = [sys.executable, str(THIS_FILE), "_clients", target, str(count), str(window)]
        procs.append(
            subprocess.Popen(
                [*argv, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith(READY.strip()):
                raise RuntimeError(f"a client process did not connect: {line!r}")
        time.sleep(WARMUP)
        load = os.getloadavg()[0]
        cpu_began = server.cpu_seconds()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(window)
        cpu = server.cpu_seconds() - cpu_began
        for proc in procs:
            proc.wait(window + 60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    raws = [msgspec.json.decode(out.read_bytes()) for out in outs]
    latencies = sorted(v for raw in raws for v in raw["latencies_ns"])
    sizes = [v for raw in raws for v in raw["sizes"]]
    ms = [v / 1e6 for v in latencies]
    delivered = len(latencies)
    return {
        "delivered": delivered,
        "delivered_share": delivered / (rate * window * subscribers),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else math.nan,
        "mean_size": statistics.fmean(sizes) if sizes else 0,
        "server_cpu_seconds": cpu,
        "server_cpu_share": cpu / window,
        "server_cpu_us_per_message": cpu / delivered * 1e6 if delivered else math.nan,
        "client_cpu_share": sum(r["client_cpu_seconds"] for r in raws) / window,
        "load_1min": load,
    }


def run_peer(log_dir: Path, name: str, subscribers: int, rate: float, window: float) -> dict:
    peer = Child(
        [sys.executable, str(THIS_FILE), "_peer", str(rate)],
        READY + r"(http://\S+)",
        log_dir,
        name,
    )
    with peer:
        target = "ws" + peer.url.removeprefix("http") + "/"
        return measure(peer, target, subscribers, rate, window, log_dir)


def run_stepstream(
    log_dir: Path,
    name: str,
    store: str,
    subscribers: int,
    rate: float,
    window: float,
    interval: float,
) -> dict:
    server = stepstream_serve(
        log_dir, name, store, "--progress-interval", str(interval), pipelines=THIS_FILE
    )
    with server:
        execution_id = _start_paced(server.url, rate, 3600)
        ws = "ws" + server.url.removeprefix("http")
        target = f"{ws}/api/v1/executions/{execution_id}/progress/ws"
        return measure(server, target, subscribers, rate, window, log_dir)


# -- all runs -----------------------------------------------------------------------------------


METRICS = ("p50_ms", "p99_ms", "server_cpu_us_per_message", "server_cpu_share")


def bench(
    log_dir: Path,
    subscriber_counts: list[int],
    stores: list[str],
    rate: float,
    rounds: int,
    window: float,
    interval: float,
) -> dict[str, Any]:
    """Alternating rounds per subscriber count; medians, spreads, and round-by-round ratios."""
    sides: dict[str, Callable[[int, int], dict[str, Any]]] = {
        PEER: lambda n, r: run_peer(log_dir, f"peer-{n}-{r}", n, rate, window)
    }
    for store in stores:
        sides[f"stepstream, {store} store"] = lambda n, r, store=store: run_stepstream(
            log_dir, f"stepstream-{store}-{n}-{r}", store, n, rate, window, interval
        )
    names = list(sides)
    results: dict[str, Any] = {}
    for n in subscriber_counts:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_no in range(rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                run = sides[name](n, round_no)
                runs[name].append(run)
                print(
                    f"{n} subscribers, round {round_no + 1}/{rounds}, {name}: "
                    f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, "
                    f"CPU {run['server_cpu_us_per_message']:.2f} µs/message, "
                    f"delivered {run['delivered_share']:.1%}, load {run['load_1min']:.2f}",
                    flush=True,
                )
        rows: dict[str, Any] = {}
        for name, rs in runs.items():
            row: dict[str, Any] = {m: summary([r[m] for r in rs]) for m in METRICS}
            row["delivered_share"] = summary([r["delivered_share"] for r in rs])
            row["client_cpu_share"] = summary([r["client_cpu_share"] for r in rs])
            row["max_ms"] = max(r["max_ms"] for r in rs)
            row["mean_size"] = statistics.fmean(r["mean_size"] for r in rs)
            if name != PEER:
                row["ratios"] = {
                    m: summary([r[m] / p[m] for r, p in zip(rs, runs[PEER], strict=True)])
                    for m in METRICS
                }
            row["runs"] = rs
            rows[name] = row
        results[str(n)] = rows
    return results


def show(results: dict[str, Any]) -> None:
    """One table per subscriber count."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    s = results["settings"]
    for n, rows in results["subscribers"].items():
        table = Table(
            title=f"Fan-out to {n} WebSocket subscribers at {s['rate']:g} events/s "
            f"({s['window']:g} s windows, {s['rounds']} alternating rounds, stepstream's "
            f"--progress-interval {s['progress_interval']:g}; median ± ½IQR)"
        )
        for col in (
            "server",
            "p50 ms",
            "p99 ms",
            "CPU µs/message",
            "server CPU",
            "delivered",
            "client CPU",
            "bytes",
            "p50 x",
            "p99 x",
            "CPU x",
        ):
            table.add_column(col, justify="left" if col == "server" else "right")
        for name, row in rows.items():
            ratios = row.get("ratios")
            table.add_row(
                name,
                fmt(row["p50_ms"], digits=2),
                fmt(row["p99_ms"], digits=2),
                fmt(row["server_cpu_us_per_message"], digits=2),
                f"{row['server_cpu_share']['median']:.0%}",
                f"{row['delivered_share']['median']:.1%}",
                f"{row['client_cpu_share']['median']:.0%}",
                f"{row['mean_size']:.0f}",
                *(
                    fmt(ratios[m], digits=2) if ratios else "1"
                    for m in ("p50_ms", "p99_ms", "server_cpu_us_per_message")
                ),
            )
        console.print(table)
    env = results["environment"]
    console.print(
        f"targets: p99 ≤ {TARGET_P99_RATIO}x and CPU per message ≤ {TARGET_CPU_RATIO}x the peer; "
        f"load average {env['load_average'][0]:.2f} before, "
        f"{env['load_average_after'][0]:.2f} after"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 subscribers, 2 short rounds")
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--store", action="append", choices=["memory", "sqlite"])
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=0.0,
        help="stepstream's; below 1/rate every message goes out, and it sets the step's poke timer",
    )
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.window = 2, 3.0
    counts = args.subscribers or ([100] if args.quick else list(SUBSCRIBERS))
    stores = args.store or ["memory"]
    # Each subscriber is a socket at both ends, and the server holds them all.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(counts) + 256
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            sys.exit(f"{max(counts)} subscribers need ulimit -n ≥ {needed} (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    results: dict[str, Any] = {
        "environment": environment(),
        "settings": {
            "rate": args.rate,
            "progress_interval": args.progress_interval,
            "window": args.window,
            "warmup": WARMUP,
            "rounds": args.rounds,
            "stores": stores,
            "per_client_process": PER_CLIENT_PROCESS,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench_fanout-") as tmp:
        results["subscribers"] = bench(
            Path(tmp), counts, stores, args.rate, args.rounds, args.window, args.progress_interval
        )
    results["environment"]["load_average_after"] = os.getloadavg()
    show(results)
    save(results, "bench_fanout", args.out)


def _child() -> None:
    """Dispatch the child-process entry points."""
    command, *args = sys.argv[1:]
    if command == "_peer":
        child_peer(float(args[0]))
    elif command == "_clients":
        child_clients(args[0], int(args[1]), float(args[2]), args[3])
    else:
        raise SystemExit(f"unknown child command {command!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child()
    else:
        main()
