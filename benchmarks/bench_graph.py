"""Per-step overhead of pipelines shaped as graphs, against a plain loop over the same functions.

Declaring: the time per `@pipeline.step` for chains of 1,000, 10,000 and 100,000
steps (flat when declaration is linear), against defining the same functions.

Four shapes of 1,000 trivial sync steps, each run by one engine, round after round:
the linear chain (`def s1(x)`, one thread hop for the whole run), the same chain
through the graph scheduler (each step names its upstream step and an input, so
it is a graph), a wide graph (1,000 steps each taking one root step, at most
`max_parallel` on worker threads at once) and the wide graph of async steps (tasks
on the event loop). Overhead per step = (stepstream - plain loop) / 1,000.
With apache-hamilton installed, Hamilton runs the wide graph too as a peer.

Run:  uv run python benchmarks/bench_graph.py [--quick] [--out PATH]
      uv run --with apache-hamilton python benchmarks/bench_graph.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import types
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio
from bench_core import RESULTS_DIR, interleaved, machine, run_sync, summary
from rich.console import Console
from rich.table import Table

from stepstream import Engine, Pipeline

STEPS = 1_000
DECLARED = (1_000, 10_000, 100_000)
console = Console(width=132)


def functions(source: str, n: int) -> list[Callable[..., Any]]:
    """n distinct functions from a template with `{i}` and `{p}` (the previous index)."""
    namespace: dict[str, Any] = {}
    for i in range(n):
        exec(source.format(i=i, p=max(i - 1, 0)), namespace)
    return [namespace[f"s{i}"] for i in range(n)]


def linear_chain() -> tuple[Pipeline, Callable[[], Any]]:
    """s_i(x) takes the previous result: the plain chain every pipeline has been."""
    fns = functions("def s{i}(x):\n    return x + 1\n", STEPS)
    p = Pipeline("linear")
    for i, fn in enumerate(fns):
        p.step(name=f"s{i}")(fn)

    def plain() -> Any:
        value = 0
        for fn in fns:
            value = fn(value)
        return value

    return p, plain


def graph_chain() -> tuple[Pipeline, Callable[[], Any]]:
    """s_i(s_{i-1}, x): a chain that also takes an input, so the graph scheduler runs it."""
    first = functions("def s{i}(x):\n    return x + 1\n", 1)
    rest = functions("def s{i}(s{p}, x):\n    return s{p} + 1\n", STEPS)[1:]
    p = Pipeline("graph-chain")
    p.step(first[0])
    for fn in rest:
        p.step(fn)

    def plain() -> Any:
        value = first[0](0)
        for i, fn in enumerate(rest, start=1):
            value = fn(**{f"s{i - 1}": value, "x": 0})
        return value

    return p, plain


def wide(is_async: bool) -> tuple[Pipeline, Callable[[], Any]]:
    """root(x), then s1..s999 each taking root: 999 steps free to run at once."""
    keyword = "async def" if is_async else "def"
    root = functions("def s{i}(x):\n    return x + 1\n", 1)[0]
    leaves = functions(f"{keyword} s{{i}}(s0):\n    return s0 + 1\n", STEPS)[1:]
    sync_leaves = functions("def s{i}(s0):\n    return s0 + 1\n", STEPS)[1:]
    p = Pipeline("wide-async" if is_async else "wide")
    p.step(root)
    for fn in leaves:
        p.step(fn)

    def plain() -> Any:
        value = root(0)
        last = None
        for fn in sync_leaves:
            last = fn(value)
        return last

    return p, plain


def hamilton_wide() -> Callable[[], float] | None:
    """Hamilton's driver on the same wide graph, or None without it."""
    try:
        from hamilton import base, driver
    except ImportError:
        return None
    module = types.ModuleType("bench_wide")
    lines = ["def s0(x: int) -> int:\n    return x + 1\n"]
    lines += [f"def s{i}(s0: int) -> int:\n    return s0 + 1\n" for i in range(1, STEPS)]
    exec("\n".join(lines), module.__dict__)
    sys.modules[module.__name__] = module
    dr = driver.Driver({}, module, adapter=base.SimplePythonGraphAdapter(base.DictResult()))
    outputs = [f"s{i}" for i in range(1, STEPS)]

    def run() -> float:
        began = perf_counter()
        dr.execute(outputs, inputs={"x": 0})
        return perf_counter() - began

    return run


SHAPES = {
    "linear chain": lambda: linear_chain(),
    "chain through the graph scheduler": lambda: graph_chain(),
    "wide graph, sync steps": lambda: wide(False),
    "wide graph, async steps": lambda: wide(True),
}


def bench(repeats: int, warmup: int) -> dict[str, Any]:
    """Every shape and its plain loop, interleaved round by round."""
    built = {name: make() for name, make in SHAPES.items()}
    hamilton = hamilton_wide()

    async def main() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        engine = Engine(load_entrypoints=False)
        peers: dict[str, Callable[[], Any]] = {}
        for name, (pipeline, plain) in built.items():

            async def run(pipeline: Pipeline = pipeline) -> float:
                began = perf_counter()
                record = await engine.run(pipeline, {"x": 0})
                elapsed = perf_counter() - began
                assert record.status == "completed", record.error
                return elapsed

            def loop(plain: Callable[[], Any] = plain) -> float:
                began = perf_counter()
                plain()
                return perf_counter() - began

            peers[name] = run
            peers[f"plain: {name}"] = lambda loop=loop: run_sync(loop)
        if hamilton is not None:
            peers["Hamilton, wide graph"] = lambda: run_sync(hamilton)
        return await interleaved(peers, repeats, warmup)

    wall, cpu = anyio.run(main)
    rows: dict[str, Any] = {}
    linear = None
    for name in SHAPES:
        plain = statistics.median(wall[f"plain: {name}"])
        plain_cpu = statistics.median(cpu[f"plain: {name}"])
        rows[name] = {
            "total_ms": summary(wall[name], 1e3),
            "overhead_us_per_step": summary([(t - plain) / STEPS * 1e6 for t in wall[name]]),
            "cpu_overhead_us_per_step": summary([(t - plain_cpu) / STEPS * 1e6 for t in cpu[name]]),
        }
        if linear is None:
            linear = rows[name]["overhead_us_per_step"]["median"]
        rows[name]["ratio_to_linear"] = rows[name]["overhead_us_per_step"]["median"] / linear
    if hamilton is not None:
        rows["Hamilton, wide graph"] = {
            "total_ms": summary(wall["Hamilton, wide graph"], 1e3),
            "overhead_us_per_step": summary(
                [
                    (t - statistics.median(wall["plain: wide graph, sync steps"])) / STEPS * 1e6
                    for t in wall["Hamilton, wide graph"]
                ]
            ),
        }
        rows["wide graph, sync steps"]["ratio_to_hamilton"] = (
            rows["wide graph, sync steps"]["overhead_us_per_step"]["median"]
            / rows["Hamilton, wide graph"]["overhead_us_per_step"]["median"]
        )
    return {"steps": STEPS, "repeats": repeats, "rows": rows}


def bench_declaring(rounds: int) -> dict[str, Any]:
    """Seconds to declare chains of each length, per step, alternating lengths each round."""
    per_step: dict[int, list[float]] = {n: [] for n in DECLARED}
    defining: dict[int, list[float]] = {n: [] for n in DECLARED}
    for _ in range(rounds):
        for n in DECLARED:
            began = perf_counter()
            fns = functions("def s{i}(x):\n    return x + 1\n", n)
            defined = perf_counter() - began
            p = Pipeline("declared")
            began = perf_counter()
            for fn in fns:
                p.step(fn)
            per_step[n].append((perf_counter() - began) / n)
            defining[n].append(defined / n)
    return {
        str(n): {
            "us_per_step": summary(per_step[n], 1e6),
            "define_us_per_function": summary(defining[n], 1e6),
            "total_s": statistics.median(per_step[n]) * n,
        }
        for n in DECLARED
    }


def report(result: dict[str, Any]) -> None:
    """One table: total, overhead per step (wall and CPU, ± half the IQR), ratios."""
    table = Table(title=f"Per-step overhead by pipeline shape, {STEPS:,} steps")
    for column in (
        "shape",
        "total",
        "overhead/step",
        "CPU overhead/step",
        "÷ linear",
        "÷ Hamilton",
    ):
        table.add_column(column, justify="left" if column == "shape" else "right")
    for name, row in result["rows"].items():
        over = row["overhead_us_per_step"]
        cpu = row.get("cpu_overhead_us_per_step")
        table.add_row(
            name,
            f"{row['total_ms']['median']:.2f} ms",
            f"{over['median']:.2f} µs ±{over['spread'] * 50:.0f}%",
            f"{cpu['median']:.2f} µs" if cpu else "-",
            f"{row['ratio_to_linear']:.1f}x" if "ratio_to_linear" in row else "-",
            f"{row['ratio_to_hamilton']:.2f}x" if "ratio_to_hamilton" in row else "-",
        )
    console.print(table)
    declared = Table(title="Declaring a chain: time per @pipeline.step")
    for column in ("steps", "per step", "total", "exec'ing the function (peer)", "÷ 1,000"):
        declared.add_column(column, justify="right")
    base = result["declaring"][str(DECLARED[0])]["us_per_step"]["median"]
    for n, row in result["declaring"].items():
        step = row["us_per_step"]
        declared.add_row(
            f"{int(n):,}",
            f"{step['median']:.1f} µs ±{step['spread'] * 50:.0f}%",
            f"{row['total_s']:.2f} s",
            f"{row['define_us_per_function']['median']:.1f} µs",
            f"{step['median'] / base:.2f}x",
        )
    console.print(declared)
    console.print(f"load average (1 min) at the start: {result['machine']['load_average_1min']}")


def main() -> None:
    """Parse options, run, print, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds, for a smoke check")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args()
    about = machine()
    result = bench(repeats=3 if args.quick else 15, warmup=1 if args.quick else 2)
    result["declaring"] = bench_declaring(rounds=2 if args.quick else 5)
    result["machine"] = about
    report(result)
    out = args.out or RESULTS_DIR / f"bench_graph-{about['date'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
