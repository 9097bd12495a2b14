"""Instructions per `POST /api/v1/executions`, counted by valgrind: the VM's speed cannot move it.

Run:  uv run python benchmarks/bench_instructions.py          (needs valgrind; about 10 minutes)
      uv run python benchmarks/bench_instructions.py --compare OTHER/.venv/bin/python

On a shared VM the CPU time of a request moves twofold from one hour to the next and
by ±20% between rounds, more than most changes to the request path. The number of
instructions it executes does not: each app (stepstream with the memory store, with
the SQLite store, and the bare Litestar handler of `bench_submit.py`) is driven in
process through ASGI, no sockets, under callgrind, once with `--requests` submissions
and once with none; the difference divided by the submissions is the instructions of
one request (both threads of the SQLite store included), less that of a null ASGI
app answering 202 at once (what driving an app costs: the requests' dicts, the tasks).
The HTTP server's share (uvicorn, httptools) and the kernel's (sockets, the commit's
write, thread wake-ups) are not counted: this is the part of `bench_submit.py`'s CPU
per request that stepstream's code decides. Like bench_submit, every submission stays
`pending` behind a `gate` execution holding the only slot; here the gate awaits
without polling, so a slower run executes no more instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_server import checkout_of, environment, save
from bench_submit import bare_app
from rich.console import Console
from rich.table import Table

THIS_FILE = Path(__file__).resolve()
KINDS = ("null", "bare", "memory", "sqlite")
NULL = "null ASGI app (the driver's own share)"
BARE = "bare Litestar handler"
BODY = b'{"pipeline":"tiny","inputs":{"rows":10}}'
CONNECTIONS = 8  # requests in flight at once, as bench_submit's wrk -c8
WARM_UP = 200
COLLECTED = re.compile(r"Collected : (\d+)")


def build_app(kind: str, folder: str) -> Any:
    """The app to drive: stepstream with a store, or bench_submit's bare handler."""
    if kind == "null":
        return null_app
    if kind == "bare":
        return bare_app()
    import anyio
    from bench_server import tiny

    from stepstream import Engine, Pipeline
    from stepstream_server.app import create_app

    gate = Pipeline("gate", description="Holds the only slot without polling")

    @gate.step
    async def hold() -> None:
        await anyio.sleep_forever()

    store = "memory://" if kind == "memory" else f"sqlite:///{folder}/submit.db"
    engine = Engine(store=store, max_concurrent=1, load_entrypoints=False)
    for pipeline in (gate, tiny):
        engine.add_pipeline(pipeline)
    return create_app(engine)


async def null_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 202 without reading the request: what driving an app costs, subtracted."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await asyncio.Event().wait()
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def post(app: Any, body: bytes) -> int:
    """One POST through the app's ASGI interface; its status code."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/executions",
        "raw_path": b"/api/v1/executions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"]


async def drive(app: Any, requests: int) -> None:
    """Start the app, hold the slot, warm up, then `requests` submissions, CONNECTIONS at once."""
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    started: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get, started.put)
    )
    if (await started.get())["type"] != "lifespan.startup.complete":
        raise SystemExit("the app did not start")
    await post(app, b'{"pipeline":"gate","inputs":{}}')

    async def connection(count: int) -> None:
        for _ in range(count):
            status = await post(app, BODY)
            if status != 202:
                raise SystemExit(f"a submission was answered {status}")

    for count in (WARM_UP, requests):
        await asyncio.gather(*(connection(count // CONNECTIONS) for _ in range(CONNECTIONS)))
    lifespan.cancel()


def child(kind: str, requests: int) -> None:
    """The process callgrind counts; it ends without tearing down what it held."""
    import uvloop

    gc.set_threshold(20_000, *gc.get_threshold()[1:])  # as `stepstream serve` (serving.py)
    folder = tempfile.mkdtemp(prefix="bench_instructions-")
    code = 0
    try:
        uvloop.run(drive(build_app(kind, folder), requests))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        shutil.rmtree(folder)
        sys.stdout.flush()
        os._exit(code)


def counted(python: str, kind: str, requests: int) -> int:
    """Instructions callgrind counts for one child run."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            str(THIS_FILE),
            "_child",
            kind,
            str(requests),
        ],
        capture_output=True,
        text=True,
        cwd=THIS_FILE.parent,
    )
    if result.returncode:
        raise SystemExit(f"{kind}, {requests} requests, failed:\n{result.stderr[-3000:]}")
    match = COLLECTED.search(result.stderr)
    if match is None:
        raise SystemExit(f"callgrind said no total:\n{result.stderr[-2000:]}")
    return int(match[1])


def per_request(python: str, kind: str, requests: int) -> float:
    """Instructions of one submission: a run with `requests` minus one with none."""
    with ThreadPoolExecutor(2) as pool:
        loaded, empty = pool.map(lambda n: counted(python, kind, n), (requests, 0))
    return (loaded - empty) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1600, help="submissions counted")
    parser.add_argument("--compare", metavar="PYTHON", help="another environment's interpreter")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args()
    env = environment()
    names = {"null": NULL, "bare": BARE}
    runs = {names.get(kind, f"stepstream, {kind} store"): (sys.executable, kind) for kind in KINDS}
    if args.compare:
        label = checkout_of(args.compare)
        for kind in ("memory", "sqlite"):
            runs[f"{label}: stepstream, {kind} store"] = (args.compare, kind)
    figures = {}
    for name, (python, kind) in runs.items():
        figures[name] = per_request(python, kind, args.requests)
        print(f"{name}: {figures[name]:,.0f} instructions per request", flush=True)
    driver = figures[NULL]
    bare = figures[BARE] - driver
    table = Table(
        title=f"Instructions per POST /api/v1/executions, in process ({args.requests} requests)"
    )
    for column in ("app", "per request, counted", "less the driver's", "÷ bare"):
        table.add_column(column)
    for name, value in figures.items():
        own = value - driver
        table.add_row(name, f"{value:,.0f}", f"{own:,.0f}", f"{own / bare:.2f}" if own else "-")
    Console().print(table)
    save(
        {"environment": env, "requests": args.requests, "instructions": figures},
        "bench_instructions",
        args.out,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
