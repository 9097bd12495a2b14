"""Side-by-side benchmarks of the stepstream server, each against a baseline run in the same run.

Run:  uv run python benchmarks/bench_server.py            (about 4 minutes; needs wrk)
      uv run python benchmarks/bench_server.py --quick    (smoke run, about a minute)
      uv run --with py-spy python benchmarks/bench_server.py --only throughput --profile
Options: --only throughput|fanout|e2e (repeatable), --profile (py-spy each server of section
1 under load), --out PATH (JSON file).

1. throughput: `GET /api/v1/executions/{id}/progress` of a real `stepstream serve` against a
   minimal Litestar handler returning the same ProgressSnapshot, both served by
   `stepstream_server.serving.run` (the same uvicorn config), loaded by wrk in alternating
   rounds.
2. fanout: one execution emitting progress as fast as it can to 100 WebSocket subscribers,
   against a plain uvicorn ASGI broadcast of same-sized messages from a thread as fast as it can.
3. e2e: a 1,000-step sync pipeline run by `stepstream serve` (one WebSocket subscriber
   attached before it starts) against `stepstream run`, both timed by the record's
   started_at/finished_at.

This file is also the pipelines file the child servers load (`--pipelines` this file) and
the entry point of the child processes (`_const`, `_broadcast`, `_clients`, `_run`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import monotonic_ns, perf_counter
from typing import Any

import msgspec

from stepstream import Pipeline, Progress, ProgressSnapshot

THIS_FILE = Path(__file__).resolve()
RESULTS_DIR = THIS_FILE.parent / "results"
BIN = Path(sys.executable).parent
STEPS = 1_000
SUBSCRIBERS = 100
TOKEN = "bench-token"
TARGET_THROUGHPUT_RATIO = 0.8
TARGET_P99_MS = 50.0
TARGET_FANOUT_RATE_RATIO = 0.5
TARGET_E2E_RATIO = 2.0
READY = "READY "


# -- the pipelines the child servers run ---------------------------------------------------


gate = Pipeline("gate", description="Holds the only slot (--max-concurrent 1) until cancelled")


@gate.step
def hold(progress: Progress) -> None:
    while True:
        progress.check()
        time.sleep(0.002)


def _make_chain(n: int) -> Pipeline:
    """n distinct trivial sync steps, `def s(x): return x + 1`, as in bench_core."""
    namespace: dict[str, Any] = {}
    chain = Pipeline("chain", description=f"{n} trivial sync steps")
    for i in range(n):
        exec(f"def s{i}(x):\n    return x + 1\n", namespace)
        chain.step(name=f"s{i}")(namespace[f"s{i}"])
    return chain


chain = _make_chain(STEPS)

fanout = Pipeline("fanout", description="Progress as fast as it can, stamped with monotonic_ns")


@fanout.step
def emit(seconds: float, progress: Progress) -> int:
    """Each message is the monotonic clock just before the event is made (interval 0 emits each)."""
    end = perf_counter() + seconds
    sent = 0
    while perf_counter() < end:
        progress.message = str(monotonic_ns())
        sent += 1
    return sent


tiny = Pipeline("tiny", description="A small finished execution whose progress is polled")


@tiny.step
def load(rows: int) -> list[int]:
    return list(range(rows))


@tiny.step
def work(values: list[int], progress: Progress) -> int:
    progress.message = "summing"
    return sum(v for v in progress.iter(values))


@tiny.step
def store(total: int) -> dict[str, int]:
    return {"total": total}


# -- measuring ------------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, quartiles, extremes; spread = IQR / median."""
    values = sorted(samples)
    median = statistics.median(values)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = median
    return {
        "median": median,
        "q1": q1,
        "q3": q3,
        "min": values[0],
        "max": values[-1],
        "spread": (q3 - q1) / median if median else 0.0,
        "samples": values,
    }


def percentile(sorted_values: list[int] | list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


def fmt(s: dict[str, Any], unit: str = "", digits: int = 0) -> str:
    """`median ± half-IQR unit`."""
    half = (s["q3"] - s["q1"]) / 2
    return f"{s['median']:,.{digits}f} ± {half:,.{digits}f}{unit}"


def plain_loop_seconds(repeats: int = 51) -> float:
    """Median time of calling 1,000 trivial functions in a plain loop: what a step costs alone."""
    namespace: dict[str, Any] = {}
    for i in range(STEPS):
        exec(f"def s{i}(x):\n    return x + 1\n", namespace)
    functions = [namespace[f"s{i}"] for i in range(STEPS)]
    times = []
    for _ in range(repeats):
        began = perf_counter()
        x = 0
        for fn in functions:
            x = fn(x)
        times.append(perf_counter() - began)
    return statistics.median(times)


# -- child processes --------------------------------------------------------------------------


class Child:
    """A child server: started, its URL read from its stdout, stopped with SIGTERM."""

    def __init__(self, argv: list[str], pattern: str, log_dir: Path, name: str) -> None:
        self.argv = argv
        self.cwd = log_dir  # never the repository: nothing a server writes may land there
        self.pattern = re.compile(pattern)
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        """Start it and wait until it says where it listens."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=self.cwd
            )
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = self.pattern.search(line)
            if match:
                self.url = match.group(1)
                return self.url
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.stderr_path.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the child has used so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def stop(self) -> None:
        """SIGTERM (graceful for `stepstream serve`), SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stepstream_serve(
    log_dir: Path,
    name: str,
    store: str,
    *extra: str,
    pipelines: Path = THIS_FILE,
    bin_dir: Path = BIN,
) -> Child:
    """The real `stepstream serve`, with this file's pipelines (or `pipelines`'), on a free port.

    `store` is a store URL, or "memory", or "sqlite" for a fresh file in `log_dir`;
    `bin_dir` holds the `stepstream` to run (another checkout's, to compare).
    """
    url = {"memory": "memory://", "sqlite": f"sqlite:///{log_dir / name}.db"}.get(store, store)
    argv = [
        str(bin_dir / "stepstream"),
        "serve",
        "--port",
        "0",
        "--store",
        url,
        "--pipelines",
        str(pipelines),
        "--max-concurrent",
        "1",
        *extra,
    ]
    return Child(argv, r"stepstream serving on (http://\S+)", log_dir, name)


def helper_child(log_dir: Path, name: str, *args: str) -> Child:
    """One of this file's own child servers (`_const`, `_broadcast`)."""
    return Child([sys.executable, str(THIS_FILE), *args], READY + r"(http://\S+)", log_dir, name)


def _serve(app: Any) -> None:
    """Serve `app` exactly as `stepstream serve` serves its app: same uvicorn config and loop."""
    from stepstream_server.serving import bind, run

    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    run(app, sock, lambda: print(f"{READY}{url}", flush=True), lambda: None)


def child_const(body: str) -> None:
    """The throughput baseline: a minimal Litestar handler returning a constant Struct."""
    from litestar import Litestar, Router, get

    snapshot = msgspec.json.decode(body, type=ProgressSnapshot)

    @get("/executions/{execution_id:str}/progress")
    async def progress(execution_id: str) -> ProgressSnapshot:
        return snapshot

    _serve(Litestar([Router("/api/v1", route_handlers=[progress])], logging_config=None))


class Broadcast:
    """The fan-out baseline: a raw ASGI WebSocket broadcast, latest message wins per client.

    A producer thread makes messages as fast as it can (the same loop shape as the
    `fanout` step, same message bytes apart from the numbers) once `clients` have
    connected; each client's sender task sends the newest message whenever it is free.
    """

    def __init__(self, clients: int, seconds: float, template: str) -> None:
        self.clients = clients
        self.seconds = seconds
        self.head, self.tail = template.split("@TS@")
        self.latest = ""
        self.done = False
        self.emitted = 0
        self.wake_pending = False
        self.wakers: list[asyncio.Event] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        waker = asyncio.Event()
        self.wakers.append(waker)
        if len(self.wakers) == self.clients:
            self.loop = asyncio.get_running_loop()
            threading.Thread(target=self._produce, daemon=True).start()
        sent = ""
        while True:
            await waker.wait()
            waker.clear()
            latest = self.latest
            if latest is not sent:
                sent = latest
                await send({"type": "websocket.send", "text": latest})
            if self.done:
                final = f'{{"type":"completed","outputs":{self.emitted}}}'
                await send({"type": "websocket.send", "text": final})
                await send({"type": "websocket.close", "code": 1000})
                return

    def _wake(self) -> None:
        self.wake_pending = False
        for waker in self.wakers:
            waker.set()

    def _produce(self) -> None:
        assert self.loop is not None
        head, tail, loop = self.head, self.tail, self.loop
        end = perf_counter() + self.seconds
        sent = 0
        while perf_counter() < end:
            self.latest = head + str(monotonic_ns()) + tail
            sent += 1
            if not self.wake_pending:
                self.wake_pending = True
                loop.call_soon_threadsafe(self._wake)
        self.emitted = sent
        self.done = True
        loop.call_soon_threadsafe(self._wake)


def broadcast_template() -> str:
    """A stepstream progress event of the `fanout` step, its message replaced by `@TS@`."""
    from stepstream.model.events import ProgressEvent, encode
    from stepstream.model.ids import new_execution_id

    event = ProgressEvent(
        execution_id=new_execution_id(),
        seq=123_456,
        progress=ProgressSnapshot(
            current_step=0,
            total_steps=1,
            percentage=0.0,
            current_step_name="emit",
            message="@TS@",
            elapsed_seconds=1.2345678901234567,
        ),
    )
    return encode(event).decode()


class _Snapshot(msgspec.Struct):
    message: str | None = None


class _Message(msgspec.Struct):
    type: str
    progress: _Snapshot | None = None
    outputs: Any = None


_decode_message = msgspec.json.Decoder(_Message).decode


async def _receive(conn: Any, latencies: list[int], sizes: list[int], out: dict[str, Any]) -> None:
    """Stamp each message on arrival; latency = arrival - the producer's stamp in the message."""
    async for raw in conn:
        now = monotonic_ns()
        message = _decode_message(raw)
        if message.progress is not None and message.progress.message:
            latencies.append(now - int(message.progress.message))
            sizes.append(len(raw))
        elif message.type in ("completed", "failed", "cancelled"):
            out["outputs"] = message.outputs
            out["terminal"] = message.type
            return


async def _clients(kind: str, url: str, subscribers: int, seconds: float) -> dict[str, Any]:
    """Attach every subscriber, then let the producer go; collect latencies until the end."""
    import httpx
    from websockets.asyncio.client import connect

    ws_base = "ws" + url.removeprefix("http")
    latencies: list[int] = []
    sizes: list[int] = []
    outs: list[dict[str, Any]] = [{} for _ in range(subscribers)]
    cpu_began = time.process_time()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        if kind == "stepstream":
            api = "/api/v1/executions"
            held = (await http.post(api, json={"pipeline": "gate", "inputs": {}})).json()
            run = (
                await http.post(api, json={"pipeline": "fanout", "inputs": {"seconds": seconds}})
            ).json()
            target = f"{ws_base}{api}/{run['execution_id']}/progress/ws"
            conns = [await connect(target, max_size=None) for _ in range(subscribers)]
            for conn in conns:
                first = json.loads(await conn.recv())
                assert first["type"] == "status" and first["status"] == "pending", first
            tasks = [
                asyncio.create_task(_receive(c, latencies, sizes, o))
                for c, o in zip(conns, outs, strict=True)
            ]
            began = perf_counter()
            await http.post(f"{api}/{held['execution_id']}/cancel")
        else:
            conns = []
            tasks = []
            began = perf_counter()
            for out in outs:
                conn = await connect(f"{ws_base}/ws", max_size=None)
                conns.append(conn)
                tasks.append(asyncio.create_task(_receive(conn, latencies, sizes, out)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
        elapsed = perf_counter() - began
    for conn in conns:
        await conn.close()
    cpu = time.process_time() - cpu_began
    emitted = outs[0].get("outputs")
    terminal = {o.get("terminal") for o in outs}
    return {
        "latencies_ns": latencies,
        "mean_size": statistics.fmean(sizes) if sizes else 0,
        "emitted": emitted,
        "terminal": sorted(t or "none" for t in terminal),
        "client_cpu_seconds": cpu,
        "client_wall_seconds": elapsed,
    }


def child_clients(kind: str, url: str, subscribers: int, seconds: float, out: str) -> None:
    """The fan-out client process: `subscribers` websockets clients on one asyncio loop (uvloop)."""
    import uvloop

    result = uvloop.run(_clients(kind, url, subscribers, seconds))
    Path(out).write_bytes(msgspec.json.encode(result))


def child_run(out: str) -> None:
    """`stepstream run THIS_FILE:chain -i x=0`, plus a plugin that saves the final record."""
    from stepstream import ExecutionRecord, hookimpl
    from stepstream.cli.main import build_cli
    from stepstream.plugins import make_plugin_manager

    plugins = make_plugin_manager()

    class Recorder:
        """Hooks fire once the change is recorded, so the record given here is final."""

        @hookimpl
        def execution_finished(self, record: ExecutionRecord) -> None:
            Path(out).write_bytes(msgspec.json.encode(record))

    plugins.register(Recorder(), name="bench-recorder")
    try:
        build_cli(plugins)(["run", f"{THIS_FILE}:chain", "-i", "x=0"], prog_name="stepstream")
    except SystemExit as exc:
        if exc.code:
            raise


# -- 1. progress route throughput ---------------------------------------------------------------


def wrk(
    url: str,
    seconds: float,
    threads: int,
    connections: int,
    header: str | None,
    script: Path | None = None,
) -> dict[str, Any]:
    """One wrk run: requests per second, latency percentiles and any non-2xx answers."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if header:
        argv += ["-H", header]
    if script:
        argv += ["-s", str(script)]
    text = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    latency = {
        p: _ms(m.group(2))
        for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+\w+)", text, re.M)
        for p in [m.group(1)]
    }
    return {
        "rps": rps,
        "latency_ms": latency,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def started_execution(
    url: str, headers: dict[str, str], pipeline: str, inputs: dict[str, Any], until: str
) -> str:
    """Submit a pipeline on a server and return its id once its status is `until`."""
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        api = "/api/v1/executions"
        record = http.post(api, json={"pipeline": pipeline, "inputs": inputs}).json()
        execution_id = record["execution_id"]
        deadline = time.monotonic() + 30
        while http.get(f"{api}/{execution_id}").json()["status"] != until:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {pipeline} execution did not reach {until!r}")
            time.sleep(0.02)
        return execution_id


THROUGHPUT_BASELINE = "litestar constant (baseline)"
SHORT = {
    THROUGHPUT_BASELINE: "baseline",
    "stepstream, sqlite store": "sqlite",
    "stepstream, memory store": "memory",
    "stepstream, memory + bearer token": "memory+token",
    f"stepstream, sqlite, {STEPS}-step execution": f"sqlite {STEPS} steps",
    "stepstream, sqlite, running execution": "sqlite running",
}
# Frames whose inclusive share of the event loop's samples says where a request's time goes.
PROFILE_FRAMES = (
    "RequestResponseCycle.run_asgi",
    "Litestar.__call__",
    "HTTPRoute.handle",
    "BearerAuth.handle",
    "presented_token",
    "ExecutionController.get_progress",
    "Engine.get",
    "SqliteStore.get",
    "SqliteStore._query",
    "SignatureModel.parse_values_from_connection_kwargs",
    "HTTPRouteHandler.to_response",
    "ASGIResponse.__call__",
    "RequestResponseCycle.send",
)


AUTH_LAYER = "ASGIMiddleware.__call__.<locals>.middleware"
AUTH_OWN = "auth layer itself (middleware frames above the route)"


def _header(headers: dict[str, str]) -> str | None:
    return next((f"{k}: {v}" for k, v in headers.items()), None)


def profile_server(child: Child, url: str, header: str | None, rps: float) -> dict[str, Any]:
    """py-spy the server's event-loop thread under wrk load: each frame's share, in µs per request.

    µs per request = share of the loop thread's samples x (1 / unprofiled req/s), which
    holds because one busy event-loop thread serves every request.
    """
    assert child.proc is not None
    out = child.cwd / f"{child.name}.pyspy.txt"
    argv = ["wrk", "-t1", "-c32", "-d9s", *(["-H", header] if header else []), url]
    load = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        subprocess.run(
            [
                shutil.which("py-spy") or "py-spy",
                "record",
                "--format",
                "raw",
                "-r",
                "400",
                "-d",
                "5",
                "-o",
                str(out),
                "--pid",
                str(child.proc.pid),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        load.wait(30)
    shares: dict[str, float] = dict.fromkeys((*PROFILE_FRAMES, AUTH_OWN), 0.0)
    leaves: dict[str, float] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r" \(.*\)$", "", f) for f in stack.split(";")]
        if "Runner.run" not in frames:
            continue  # another thread: the store's writer, anyio's workers, idle
        n = int(count)
        total += n
        for name in PROFILE_FRAMES:
            if name in frames:
                shares[name] += n
        if AUTH_LAYER in frames and "HTTPRoute.handle" not in frames:
            shares[AUTH_OWN] += n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
    per_request = 1e6 / rps
    top = sorted(leaves.items(), key=lambda kv: kv[1], reverse=True)[:10]
    return {
        "samples": total,
        "us_per_request": per_request,
        "frames_us": {k: v / total * per_request for k, v in shares.items()},
        "self_us": {k: v / total * per_request for k, v in top},
    }


def bench_throughput(log_dir: Path, quick: bool, profile: bool = False) -> dict[str, Any]:
    """Progress route vs a constant Litestar handler: alternating wrk runs on live servers."""
    import httpx

    rounds, seconds, warm = (2, 2, 1) if quick else (5, 3, 1)
    threads, connections = 1, 32
    auth = {"Authorization": f"Bearer {TOKEN}"}
    small = ("tiny", {"rows": 1000}, "completed")
    long = ("chain", {"x": 0}, "completed")
    running = ("gate", {}, "running")
    targets: dict[str, dict[str, Any]] = {
        "stepstream, sqlite store": {
            "child": stepstream_serve(log_dir, "tp-sqlite", "sqlite"),
            "headers": {},
            "run": small,
        },
        "stepstream, memory store": {
            "child": stepstream_serve(log_dir, "tp-memory", "memory"),
            "headers": {},
            "run": small,
        },
        "stepstream, memory + bearer token": {
            "child": stepstream_serve(log_dir, "tp-token", "memory", "--token", TOKEN),
            "headers": auth,
            "run": small,
        },
        f"stepstream, sqlite, {STEPS}-step execution": {
            "child": stepstream_serve(log_dir, "tp-sqlite-long", "sqlite"),
            "headers": {},
            "run": long,
        },
        "stepstream, sqlite, running execution": {
            "child": stepstream_serve(log_dir, "tp-sqlite-running", "sqlite"),
            "headers": {},
            "run": running,
        },
    }
    children = [t["child"] for t in targets.values()]
    try:
        for target in targets.values():
            url = target["child"].start()
            execution_id = started_execution(url, target["headers"], *target["run"])
            target["url"] = f"{url}/api/v1/executions/{execution_id}/progress"
            response = httpx.get(target["url"], headers=target["headers"])
            response.raise_for_status()
            target["body"] = response.text
        baseline = helper_child(
            log_dir, "tp-const", "_const", targets["stepstream, sqlite store"]["body"]
        )
        children.append(baseline)
        base_url = baseline.start()
        everyone = {
            THROUGHPUT_BASELINE: {
                "child": baseline,
                "url": f"{base_url}/api/v1/executions/some-id/progress",
                "headers": {},
                "body": httpx.get(f"{base_url}/api/v1/executions/some-id/progress").text,
            },
            **targets,
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in everyone}
        names = list(everyone)
        for name in names:
            wrk(
                everyone[name]["url"],
                warm,
                threads,
                connections,
                _header(everyone[name]["headers"]),
            )
        for round_no in range(rounds):
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                t = everyone[name]
                runs[name].append(
                    wrk(t["url"], seconds, threads, connections, _header(t["headers"]))
                )
        profiles = {}
        if profile:
            for name, t in everyone.items():
                rps = statistics.median(r["rps"] for r in runs[name])
                profiles[name] = profile_server(t["child"], t["url"], _header(t["headers"]), rps)
    finally:
        for child in children:
            child.stop()
    base = summary([r["rps"] for r in runs[THROUGHPUT_BASELINE]])
    result: dict[str, Any] = {
        "settings": {
            "wrk": f"-t{threads} -c{connections} -d{seconds}s",
            "rounds": rounds,
            "warmup_seconds": warm,
            "body_bytes": {n: len(everyone[n]["body"]) for n in everyone},
        },
        "rows": {},
    }
    if profiles:
        result["profiles"] = profiles
    for name in everyone:
        rps = summary([r["rps"] for r in runs[name]])
        result["rows"][name] = {
            "rps": rps,
            "ratio": rps["median"] / base["median"],
            "p50_ms": statistics.median(r["latency_ms"]["50"] for r in runs[name]),
            "p99_ms": statistics.median(r["latency_ms"]["99"] for r in runs[name]),
            "non_2xx": sum(r["non_2xx"] for r in runs[name]),
            "socket_errors": [r["socket_errors"] for r in runs[name] if r["socket_errors"]],
        }
    return result


# -- 2. fan-out --------------------------------------------------------------------------------


def run_clients(kind: str, url: str, seconds: float, log_dir: Path) -> dict[str, Any]:
    """Run the client process against a server and read its measurements."""
    out = log_dir / f"clients-{kind}.json"
    subprocess.run(
        [
            sys.executable,
            str(THIS_FILE),
            "_clients",
            kind,
            url,
            str(SUBSCRIBERS),
            str(seconds),
            str(out),
        ],
        check=True,
        timeout=seconds + 120,
        cwd=log_dir,
    )
    raw = msgspec.json.decode(out.read_bytes())
    latencies = sorted(raw.pop("latencies_ns"))
    ms = [v / 1e6 for v in latencies]
    raw.update(
        delivered=len(latencies),
        delivered_per_second=len(latencies) / seconds,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1] if ms else float("nan"),
    )
    return raw


def bench_fanout(log_dir: Path, quick: bool) -> dict[str, Any]:
    """stepstream's WebSocket fan-out vs a plain ASGI broadcast, alternating fresh servers."""
    rounds, seconds = (1, 2.0) if quick else (4, 4.0)
    template = broadcast_template()
    baseline = "plain ASGI broadcast (baseline)"
    servers: dict[str, Callable[[int], Child]] = {
        baseline: lambda n: helper_child(
            log_dir, f"broadcast-{n}", "_broadcast", str(SUBSCRIBERS), str(seconds), template
        ),
        "stepstream, sqlite store": lambda n: stepstream_serve(
            log_dir, f"fanout-sqlite-{n}", "sqlite", "--progress-interval", "0"
        ),
        "stepstream, memory store": lambda n: stepstream_serve(
            log_dir, f"fanout-memory-{n}", "memory", "--progress-interval", "0"
        ),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    names = list(servers)
    for round_no in range(rounds):
        for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
            with servers[name](round_no) as child:
                kind = "broadcast" if name == baseline else "stepstream"
                cpu_began = child.cpu_seconds()
                run = run_clients(kind, child.url, seconds, log_dir)
                run["server_cpu_share"] = (child.cpu_seconds() - cpu_began) / run[
                    "client_wall_seconds"
                ]
                runs[name].append(run)
    base_rate = statistics.median(r["delivered_per_second"] for r in runs[baseline])
    result: dict[str, Any] = {
        "settings": {"subscribers": SUBSCRIBERS, "seconds": seconds, "rounds": rounds},
        "rows": {},
    }
    for name, rs in runs.items():
        rate = summary([r["delivered_per_second"] for r in rs])
        result["rows"][name] = {
            "delivered_per_second": rate,
            "rate_ratio": rate["median"] / base_rate,
            "emitted_per_second": statistics.median((r["emitted"] or 0) / seconds for r in rs),
            "p50_ms": summary([r["p50_ms"] for r in rs]),
            "p99_ms": summary([r["p99_ms"] for r in rs]),
            "max_ms": max(r["max_ms"] for r in rs),
            "mean_size": statistics.fmean(r["mean_size"] for r in rs),
            "client_cpu_share": statistics.median(
                r["client_cpu_seconds"] / r["client_wall_seconds"] for r in rs
            ),
            "server_cpu_share": statistics.median(r["server_cpu_share"] for r in rs),
            "terminal": sorted({t for r in rs for t in r["terminal"]}),
            "runs": rs,
        }
    return result


# -- 3. end to end ------------------------------------------------------------------------------


def _duration(record: dict[str, Any]) -> float:
    started = datetime.fromisoformat(record["started_at"])
    finished = datetime.fromisoformat(record["finished_at"])
    return (finished - started).total_seconds()


async def _server_chain(url: str) -> dict[str, Any]:
    """Queue `chain` behind a running `gate`, subscribe, release the gate, wait for `completed`."""
    import httpx
    from websockets.asyncio.client import connect

    api = "/api/v1/executions"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        held = (await http.post(api, json={"pipeline": "gate", "inputs": {}})).json()
        run = (await http.post(api, json={"pipeline": "chain", "inputs": {"x": 0}})).json()
        execution_id = run["execution_id"]
        target = "ws" + url.removeprefix("http") + f"{api}/{execution_id}/progress/ws"
        received = 0
        async with connect(target, max_size=None) as conn:
            first = json.loads(await conn.recv())
            assert first["type"] == "status" and first["status"] == "pending", first
            await http.post(f"{api}/{held['execution_id']}/cancel")
            async for raw in conn:
                received += 1
                if json.loads(raw)["type"] in ("completed", "failed", "cancelled"):
                    break
        record = (await http.get(f"{api}/{execution_id}")).json()
    assert record["status"] == "completed" and record["outputs"] == STEPS, record["status"]
    return {"seconds": _duration(record), "messages": received}


def _cli_chain(log_dir: Path) -> dict[str, Any]:
    out = log_dir / "run-record.json"
    subprocess.run(
        [sys.executable, str(THIS_FILE), "_run", str(out)],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=log_dir,
    )
    record = json.loads(out.read_text())
    assert record["status"] == "completed" and record["outputs"] == STEPS, record["status"]
    return {"seconds": _duration(record)}


async def _engine_chains(rounds: int) -> list[dict[str, Any]]:
    """The reference: `await engine.run(chain)` in this process, no subscriber, no console."""
    from stepstream import Engine

    engine = Engine()
    found = []
    for _ in range(rounds):
        record = await engine.run(chain, {"x": 0})
        found.append({"seconds": (record.finished_at - record.started_at).total_seconds()})
    return found


E2E_SERVERS = ("server, sqlite store", "server, memory store")


def bench_e2e(log_dir: Path, quick: bool) -> dict[str, Any]:
    """1,000 steps: the server with a subscriber vs `stepstream run`, interleaved."""
    rounds = 3 if quick else 10
    plain = plain_loop_seconds()
    runs: dict[str, list[dict[str, Any]]] = {"stepstream run": [], **{n: [] for n in E2E_SERVERS}}
    with (
        stepstream_serve(log_dir, "e2e-sqlite", "sqlite") as on_sqlite,
        stepstream_serve(log_dir, "e2e-memory", "memory") as on_memory,
    ):
        for _ in range(rounds):
            runs["stepstream run"].append(_cli_chain(log_dir))
            for name, child in zip(E2E_SERVERS, (on_sqlite, on_memory), strict=True):
                runs[name].append(asyncio.run(_server_chain(child.url)))
    reference = asyncio.run(_engine_chains(rounds + 3))[3:]

    def per_step_us(some: list[dict[str, Any]]) -> dict[str, Any]:
        return summary([(r["seconds"] - plain) / STEPS * 1e6 for r in some])

    cli = per_step_us(runs["stepstream run"])
    rows: dict[str, Any] = {"stepstream run (fresh process each, console bar)": cli}
    for name in E2E_SERVERS:
        rows[f"{name} + 1 WS subscriber, first execution"] = per_step_us(runs[name][:1])
        rows[f"{name} + 1 WS subscriber, later executions"] = per_step_us(runs[name][1:])
    rows["reference: engine.run in-process, memory, no subscriber"] = per_step_us(reference)
    return {
        "settings": {"steps": STEPS, "rounds": rounds, "plain_loop_us": plain * 1e6},
        "rows": {name: {"us": s, "ratio": s["median"] / cli["median"]} for name, s in rows.items()},
        "ws_messages": {n: statistics.median(r["messages"] for r in runs[n]) for n in E2E_SERVERS},
    }


# -- reporting ---------------------------------------------------------------------------------


def checkout_of(python: str) -> str:
    """The folder of the checkout whose `.venv/bin/python` this is: how --compare names it."""
    return Path(python).parents[2].name


def environment() -> dict[str, Any]:
    """What the figures depend on: versions, commit, load."""
    root = THIS_FILE.parent.parent
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "framework", "server"],
            capture_output=True,
            text=True,
            cwd=root,
        ).stdout.strip()
    )
    wrk = shutil.which("wrk")
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout if wrk else ""
    sources = hashlib.sha256()
    for path in sorted((root / "framework" / "stepstream").rglob("*.py")) + sorted(
        (root / "server" / "stepstream_server").rglob("*.py")
    ):
        sources.update(path.read_bytes())
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "commit": commit + ("+dirty" if dirty else ""),
        "sources_sha256": sources.hexdigest()[:12],  # framework + server, dirty tree included
        "wrk": wrk_version.split("\n")[0],
        "versions": {
            p: metadata.version(p)
            for p in (
                "stepstream",
                "stepstream-server",
                "litestar",
                "uvicorn",
                "httptools",
                "uvloop",
                "websockets",
                "msgspec",
            )
        },
    }


def show(results: dict[str, Any]) -> None:
    """Print one table per section."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    if "throughput" in results:
        r = results["throughput"]
        table = Table(
            title=f"1a. GET …/progress throughput (wrk {r['settings']['wrk']}, "
            f"{r['settings']['rounds']} alternating rounds)"
        )
        for col in (
            "server",
            "req/s median ± ½IQR",
            "ratio",
            "target",
            "p50 ms",
            "p99 ms",
            "non-2xx",
        ):
            table.add_column(col, justify="left" if col == "server" else "right")
        for name, row in r["rows"].items():
            is_base = "baseline" in name
            table.add_row(
                name,
                fmt(row["rps"]),
                f"{row['ratio']:.2f}",
                "" if is_base else f"≥ {TARGET_THROUGHPUT_RATIO}",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                str(row["non_2xx"]),
            )
        console.print(table)
        if "profiles" in r:
            names = list(r["profiles"])
            ptable = Table(
                title="where a request's time goes: py-spy of each server's event loop under wrk, "
                "µs per request (inclusive)"
            )
            ptable.add_column("frame", no_wrap=True)
            for name in names:
                ptable.add_column(SHORT.get(name, name), justify="right")
            ptable.add_row(
                "one request (1 / req/s)",
                *(f"{r['profiles'][n]['us_per_request']:.0f}" for n in names),
            )
            for frame in (*PROFILE_FRAMES, AUTH_OWN):
                ptable.add_row(
                    frame, *(f"{r['profiles'][n]['frames_us'][frame]:.1f}" for n in names)
                )
            console.print(ptable)
    if "fanout" in results:
        r = results["fanout"]
        s = r["settings"]
        table = Table(
            title=f"1b. Fan-out to {s['subscribers']} WebSocket subscribers "
            f"({s['seconds']:.0f} s of emission, {s['rounds']} rounds each)"
        )
        for col in (
            "server",
            "delivered/s (sum)",
            "rate ratio",
            "emitted/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "msg bytes",
            "server CPU",
            "client CPU",
        ):
            table.add_column(col, justify="left" if col == "server" else "right")
        for name, row in r["rows"].items():
            table.add_row(
                name,
                fmt(row["delivered_per_second"]),
                f"{row['rate_ratio']:.2f}",
                f"{row['emitted_per_second']:,.0f}",
                fmt(row["p50_ms"], digits=1),
                fmt(row["p99_ms"], digits=1),
                f"{row['max_ms']:.0f}",
                f"{row['mean_size']:.0f}",
                f"{row['server_cpu_share']:.0%}",
                f"{row['client_cpu_share']:.0%}",
            )
        console.print(table)
        console.print(
            f"targets: p99 < {TARGET_P99_MS:.0f} ms, delivered rate ≥ "
            f"{TARGET_FANOUT_RATE_RATIO} x baseline"
        )
    if "e2e" in results:
        r = results["e2e"]
        table = Table(
            title=f"1c. {STEPS}-step sync pipeline, per-step overhead from the record's "
            f"started_at/finished_at ({r['settings']['rounds']} interleaved rounds; "
            f"plain loop {r['settings']['plain_loop_us']:.0f} µs subtracted)"
        )
        for col in ("run by", "µs per step", "ratio vs stepstream run", "target"):
            table.add_column(col, justify="left" if col == "run by" else "right")
        for name, row in r["rows"].items():
            target = f"≤ {TARGET_E2E_RATIO}" if "later" in name else ""
            table.add_row(name, fmt(row["us"], digits=1), f"{row['ratio']:.2f}", target)
        console.print(table)
        console.print(f"WebSocket messages received per execution: {r['ws_messages']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--only", action="append", choices=["throughput", "fanout", "e2e"])
    parser.add_argument("--out", type=Path, help="JSON results file")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each server of section 1 (needs py-spy)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None and (not args.only or "throughput" in args.only):
        sys.exit("wrk is needed for the throughput section: apt-get install -y wrk")
    if args.profile and shutil.which("py-spy") is None:
        sys.exit(
            "--profile needs py-spy: uv run --with py-spy python benchmarks/bench_server.py ..."
        )
    sections: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
        "throughput": lambda tmp, quick: bench_throughput(tmp, quick, args.profile),
        "fanout": bench_fanout,
        "e2e": bench_e2e,
    }
    results: dict[str, Any] = {"environment": environment()}
    with tempfile.TemporaryDirectory(prefix="bench_server-") as tmp:
        for name, section in sections.items():
            if args.only and name not in args.only:
                continue
            began = perf_counter()
            results[name] = section(Path(tmp), args.quick)
            results[name]["section_seconds"] = perf_counter() - began
    results["environment"]["load_average_after"] = os.getloadavg()
    show(results)
    save(results, "bench_server", args.out)


def save(results: dict[str, Any], script: str, out: Path | None) -> None:
    """Write every figure to `out`, or to a file named after the script and the time."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out or RESULTS_DIR / f"{script}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    print(f"results: {out}")


def _child() -> None:
    """Dispatch the child-process entry points."""
    command, *args = sys.argv[1:]
    if command == "_const":
        child_const(args[0])
    elif command == "_broadcast":
        _serve(Broadcast(int(args[0]), float(args[1]), args[2]))
    elif command == "_clients":
        child_clients(args[0], args[1], int(args[2]), float(args[3]), args[4])
    elif command == "_run":
        child_run(args[0])
    else:
        raise SystemExit(f"unknown child command {command!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child()
    else:
        main()
