"""`POST /api/v1/executions` of a real `stepstream serve` against a bare Litestar POST handler.

Run:  uv run python benchmarks/bench_submit.py             (about 2 minutes; needs wrk)
      uv run python benchmarks/bench_submit.py --quick     (smoke run)
      uv run python benchmarks/bench_submit.py --compare OTHER/.venv/bin/python
                                                           (+ another checkout's servers)

Each stepstream server runs with `--max-concurrent 1` and a `gate` execution holding
the slot, so every submitted execution is recorded `pending`, kept by the store
(the 202's durability promise) and queued, but never runs: what is measured is the
request path alone. The baseline decodes the same JSON body into a msgspec Struct
and answers 202 with an id. Servers take turns (alternating rounds of wrk), and
each round's server CPU time per request is read from /proc.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
from bench_server import (
    READY,
    Child,
    checkout_of,
    environment,
    stepstream_serve,
    summary,
    wrk,
)
from rich.console import Console
from rich.table import Table

THIS_FILE = Path(__file__).resolve()
BODY = {"pipeline": "tiny", "inputs": {"rows": 10}}
BASELINE = "bare Litestar POST handler (baseline)"
TARGET_RATIO = 0.6
THREADS, CONNECTIONS = 1, 8

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


class Submission(msgspec.Struct):
    """The body the baseline decodes: what a client sends to start an execution."""

    pipeline: str
    inputs: dict[str, Any] = {}


class Accepted(msgspec.Struct):
    """What the baseline answers."""

    execution_id: str
    status: str = "pending"


async def bare_submit(data: Submission) -> Accepted:
    """The baseline's handler: decode the body into a Struct, answer 202 with an id."""
    return Accepted(execution_id=f"exec_{uuid.uuid4().hex}")


def bare_app() -> Any:
    """The baseline: a minimal Litestar app with `bare_submit` as its one route."""
    from litestar import Litestar, Router, post

    handler = post("/executions", status_code=202)(bare_submit)
    return Litestar([Router("/api/v1", route_handlers=[handler])], logging_config=None)


def child_bare() -> None:
    """The baseline server."""
    from bench_server import _serve

    _serve(bare_app())


def bench(log_dir: Path, quick: bool, compare: str | None = None) -> dict[str, Any]:
    """Alternating wrk rounds against each server; requests/s and server CPU per request.

    With `compare` (another environment's python), that checkout's two servers take
    part in the same rounds, so before and after meet the same machine.
    """
    rounds, seconds = (2, 2) if quick else (5, 4)
    script = log_dir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=msgspec.json.encode(BODY).decode()))
    servers = {
        BASELINE: Child(
            [sys.executable, str(THIS_FILE), "_bare"], READY + r"(http://\S+)", log_dir, "bare"
        ),
        "stepstream, sqlite store": stepstream_serve(log_dir, "submit-sqlite", "sqlite"),
        "stepstream, memory store": stepstream_serve(log_dir, "submit-memory", "memory"),
    }
    if compare:
        other, label = Path(compare).parent, checkout_of(compare)
        for store in ("sqlite", "memory"):
            servers[f"{label}: stepstream, {store} store"] = stepstream_serve(
                log_dir, f"submit-{store}-{label}", store, bin_dir=other
            )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        urls = {}
        for name, child in servers.items():
            base = child.start()
            if name != BASELINE:  # hold the only slot: what is submitted stays pending
                held = httpx.post(f"{base}/api/v1/executions", json={"pipeline": "gate"})
                held.raise_for_status()
            urls[name] = f"{base}/api/v1/executions"
            wrk(urls[name], 1, THREADS, CONNECTIONS, None, script)  # warm up
        names = list(servers)
        for round_no in range(rounds):
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                before = servers[name].cpu_seconds()
                run = wrk(urls[name], seconds, THREADS, CONNECTIONS, None, script)
                cpu = servers[name].cpu_seconds() - before
                run["cpu_ms_per_request"] = 1000 * cpu / max(1.0, run["rps"] * seconds)
                runs[name].append(run)
    finally:
        for child in servers.values():
            child.stop()
    base = summary([r["rps"] for r in runs[BASELINE]])
    base_cpu = summary([r["cpu_ms_per_request"] for r in runs[BASELINE]])
    rows = {}
    for name, taken in runs.items():
        rps = summary([r["rps"] for r in taken])
        cpu = summary([r["cpu_ms_per_request"] for r in taken])
        rows[name] = {
            "rps": rps,
            "ratio": rps["median"] / base["median"],
            "cpu_ms": cpu,
            "cpu_ratio": cpu["median"] / base_cpu["median"],
            "p99_ms": summary([r["latency_ms"]["99"] for r in taken])["median"],
            "non_2xx": sum(r["non_2xx"] for r in taken),
        }
    return {
        "settings": {"wrk": f"-t{THREADS} -c{CONNECTIONS} -d{seconds}s", "rounds": rounds},
        "rows": rows,
    }


def show(result: dict[str, Any], env: dict[str, Any]) -> None:
    """The table: each server's requests/s and CPU per request, as ratios to the baseline."""
    console = Console()
    table = Table(
        title=f"POST /api/v1/executions, wrk {result['settings']['wrk']}, "
        f"{result['settings']['rounds']} alternating rounds; load {env['load_average']}"
    )
    for col in ("server", "req/s (median, spread)", "÷ bare", "server CPU/request", "p99"):
        table.add_column(col)
    for name, row in result["rows"].items():
        table.add_row(
            name,
            f"{row['rps']['median']:,.0f} ±{100 * row['rps']['spread']:.0f}%",
            f"{row['ratio']:.2f}" + (f" (goal ≥ {TARGET_RATIO})" if name != BASELINE else ""),
            f"{row['cpu_ms']['median']:.3f} ms ({row['cpu_ratio']:.1f}x bare)",
            f"{row['p99_ms']:.1f} ms",
        )
        if row["non_2xx"]:
            console.print(f"[red]{name}: {row['non_2xx']} answers were not 2xx[/]")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--compare", metavar="PYTHON", help="another environment's interpreter")
    args = parser.parse_args()
    env = environment()
    with tempfile.TemporaryDirectory(prefix="bench_submit-") as tmp:
        result = bench(Path(tmp), args.quick, args.compare)
    env["load_average_after"] = os.getloadavg()
    show(result, env)
    print(f"load average after: {env['load_average_after']}")


if __name__ == "__main__":
    if sys.argv[1:] == ["_bare"]:
        child_bare()
    else:
        main()
