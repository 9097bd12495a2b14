"""`stepstream run` per step, seen from outside, against the core path it wraps.

Run:  uv run python benchmarks/bench_cli.py            (about a minute)
      uv run python benchmarks/bench_cli.py --quick
      uv run python benchmarks/bench_cli.py --steps 5000   (the issue's first measure)

The CPU time of a whole `stepstream run` process (console bars drawn as in a
terminal, FORCE_COLOR) running a chain of N trivial sync steps, minus that of a
10-step chain, divided by the difference in steps: what a step costs a user of the
CLI, start-up excluded. The peer is the same chain run in process by `engine.run`
(no console), timed in the same rounds. Rounds alternate the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import process_time
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from stepstream import Engine, Pipeline

LONG, SHORT = 50_000, 10  # long enough that start-up noise is a small share per step
TARGET_US = 6.0
RESULTS_DIR = Path(__file__).parent / "results"
PIPELINES = """
from stepstream import Pipeline


def plus_one():
    \"\"\"A new trivial step function, `def s(x): return x + 1`, each time.\"\"\"
    def s(x):
        return x + 1
    return s


def chain(n):
    \"\"\"n trivial sync steps, each its own function object (none compiled at run time).\"\"\"
    pipeline = Pipeline(f"chain{n}")
    for i in range(n):
        pipeline.step(name=f"s{i}")(plus_one())
    return pipeline


long = chain(LONG)
short = chain(SHORT)
"""


def child_cpu(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) one child process used from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def in_process_cpu(pipeline: Pipeline) -> float:
    """CPU seconds of one `engine.run` of `pipeline` on a fresh memory-store engine."""

    async def run() -> float:
        async with Engine(load_entrypoints=False) as engine:
            began = process_time()
            await engine.run(pipeline, {"x": 0})
            return process_time() - began

    return anyio.run(run)


def chain(n: int) -> Pipeline:
    """The same chain as the pipelines file, built here for the in-process peer."""
    namespace: dict[str, Any] = {"Pipeline": Pipeline, "LONG": n, "SHORT": SHORT}
    exec(PIPELINES, namespace)
    return namespace["long"]


def bench(rounds: int, long: int) -> dict[str, Any]:
    """Per-step CPU of `stepstream run` and of `engine.run`, per round."""
    with tempfile.TemporaryDirectory(prefix="bench_cli-") as tmp:
        target = Path(tmp) / "chains.py"
        target.write_text(f"LONG, SHORT = {long}, {SHORT}\n" + PIPELINES)
        env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"}
        command = [str(Path(sys.executable).parent / "stepstream"), "run"]
        long_pipeline, short_pipeline = chain(long), chain(SHORT)
        cli, core = [], []
        for round_no in range(rounds):
            runs = ["cli", "core"] if round_no % 2 == 0 else ["core", "cli"]
            for kind in runs:
                if kind == "cli":
                    long_cpu = child_cpu([*command, f"{target}:long", "-i", "x=0"], env)
                    short_cpu = child_cpu([*command, f"{target}:short", "-i", "x=0"], env)
                    cli.append((long_cpu - short_cpu) / (long - SHORT) * 1e6)
                else:
                    long_cpu = in_process_cpu(long_pipeline)
                    short_cpu = in_process_cpu(short_pipeline)
                    core.append((long_cpu - short_cpu) / (long - SHORT) * 1e6)
    return {"cli": cli, "core": core}


def spread(values: list[float]) -> float:
    """Interquartile range over the median."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--steps", type=int, default=LONG, help="steps of the long chain")
    args = parser.parse_args()
    load = os.getloadavg()
    result = bench(3 if args.quick else 7, args.steps)
    cli, core = statistics.median(result["cli"]), statistics.median(result["core"])
    table = Table(
        title=f"CPU per step, {args.steps:,}-step chain minus {SHORT}; {len(result['cli'])} "
        f"alternating rounds; load before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    for col in ("run by", "µs per step (median, spread)", "÷ engine.run", "goal"):
        table.add_column(col)
    table.add_row(
        "`stepstream run`, whole process, bars drawn",
        f"{cli:.2f} ±{100 * spread(result['cli']):.0f}%",
        f"{cli / core:.2f}",
        f"≤ {TARGET_US} µs" + (" ✓" if cli <= TARGET_US else " ✗"),
    )
    table.add_row(
        "`engine.run` in process (peer)",
        f"{core:.2f} ±{100 * spread(result['core']):.0f}%",
        "1",
        "",
    )
    Console().print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench_cli-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    summary = {"steps": args.steps, "load_before": load[0], "load_after": os.getloadavg()[0]}
    out.write_text(json.dumps({**summary, "us_per_step": result}, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
