"""Side-by-side benchmarks of the stepstream core, each against a baseline timed in the same run.

Run:  uv run python benchmarks/bench_core.py
With Hamilton as a peer:  uv run --with apache-hamilton python benchmarks/bench_core.py
Options: --quick (fewer repeats, for a smoke check), --out PATH (JSON file),
--only SECTION (e.g. short_chains: the fixed cost of chains of 1, 10, 100 steps).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tracemalloc
import types
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import anyio
import msgspec
import pluggy
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

import stepstream
from stepstream import Engine, Pipeline, Progress

STEPS = 1_000
STEP_REPEATS = 21  # rounds of section 1; one round of every peer takes ~35 ms
PLUGGY_REPEATS = 7
ADVANCE_CALLS = 1_000_000
MEMORY_STEPS = 10
MEMORY_ITEMS = 5
TARGET_STEP_US = 5.0
TARGET_MEMORY_BYTES = 10 * 1024
RESULTS_DIR = Path(__file__).parent / "results"

console = Console(width=132)


# -- measuring ------------------------------------------------------------------


def summary(samples: list[float], scale: float = 1.0) -> dict[str, Any]:
    """Median, quartiles, best and worst of repeated timings; spread = IQR / median."""
    values = sorted(s * scale for s in samples)
    median = statistics.median(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "median": median,
        "q1": q1,
        "q3": q3,
        "min": values[0],
        "max": values[-1],
        "spread": (q3 - q1) / median if median else 0.0,
        "samples": values,
    }


async def interleaved(
    peers: dict[str, Callable[[], Any]], repeats: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time each peer once per round, round after round, so drift hits them all alike.

    Peers are coroutine functions returning their own perf_counter seconds; the
    process CPU time around each call is kept too, as a view less disturbed by
    other processes on a shared machine.
    """
    wall: dict[str, list[float]] = {name: [] for name in peers}
    cpu: dict[str, list[float]] = {name: [] for name in peers}
    for round_no in range(warmup + repeats):
        for name, measure in peers.items():
            gc.collect()
            cpu_began = process_time()
            elapsed = await measure()
            cpu_spent = process_time() - cpu_began
            if round_no >= warmup:
                wall[name].append(elapsed)
                cpu[name].append(cpu_spent)
    return wall, cpu


async def run_sync(measure: Callable[[], float]) -> float:
    """Adapt a plain timing function to `interleaved`."""
    return measure()


# -- 1. per-step overhead -----------------------------------------------------------


def make_step_functions(n: int) -> list[Callable[[Any], Any]]:
    """n distinct trivial functions, as a pipeline author would write them."""
    namespace: dict[str, Any] = {}
    for i in range(n):
        exec(f"def s{i}(x):\n    return x + 1\n", namespace)
    return [namespace[f"s{i}"] for i in range(n)]


def make_pipeline(functions: list[Callable[[Any], Any]]) -> Pipeline:
    """The same functions as a stepstream pipeline, declared with Pipeline.step(name=...)."""
    pipeline = Pipeline("chain", description=f"{len(functions)} trivial sync steps")
    for i, fn in enumerate(functions):
        pipeline.step(name=f"s{i}")(fn)
    return pipeline


def hamilton_module(n: int) -> types.ModuleType:
    """A module s0(x), s1(s0), ... s{n-1}(s{n-2}): the same chain as Hamilton nodes."""
    module = types.ModuleType("bench_chain")
    lines = ["def s0(x: int) -> int:\n    return x + 1\n"]
    lines += [f"def s{i}(s{i - 1}: int) -> int:\n    return s{i - 1} + 1\n" for i in range(1, n)]
    exec("\n".join(lines), module.__dict__)
    sys.modules[module.__name__] = module  # Hamilton finds functions through inspect.getmodule
    return module


def hamilton_peers(n: int) -> tuple[dict[str, Callable[[], float]], str | None, str | None]:
    """Hamilton bare and with a no-op NodeExecutionHook, or why they cannot run."""
    try:
        from hamilton import base, driver
        from hamilton.lifecycle import NodeExecutionHook
    except ImportError:
        return (
            {},
            None,
            (
                "apache-hamilton is not installed; include it with "
                "`uv run --with apache-hamilton python benchmarks/bench_core.py`"
            ),
        )

    class NoOpHook(NodeExecutionHook):
        """Does nothing before and after each node: the cost of the hook mechanism alone."""

        def run_before_node_execution(self, **kwargs: Any) -> None:
            pass

        def run_after_node_execution(self, **kwargs: Any) -> None:
            pass

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * n))
    module = hamilton_module(n)
    final = f"s{n - 1}"
    bare = driver.Builder().with_modules(module).with_adapters(base.DictResult()).build()
    hooked = (
        driver.Builder().with_modules(module).with_adapters(base.DictResult(), NoOpHook()).build()
    )
    for dr in (bare, hooked):
        result = dr.execute([final], inputs={"x": 0})
        assert result[final] == n, result

    def timer(dr: Any) -> Callable[[], float]:
        def measure() -> float:
            began = perf_counter()
            dr.execute([final], inputs={"x": 0})
            return perf_counter() - began

        return measure

    version = metadata.version("apache-hamilton")
    return {"hamilton_bare": timer(bare), "hamilton_hook": timer(hooked)}, version, None


def pluggy_unit(calls: int, repeats: int, warmup: int) -> dict[str, Any]:
    """One pluggy hook call with one implementation: the reference unit of hook cost."""
    spec = pluggy.HookspecMarker("benchref")
    impl = pluggy.HookimplMarker("benchref")

    class Spec:
        @spec
        def on_step(self, execution_id: str, index: int) -> None:
            """A hook shaped like step_started."""

    class Impl:
        @impl
        def on_step(self, execution_id: str, index: int) -> None:
            pass

    pm = pluggy.PluginManager("benchref")
    pm.add_hookspecs(Spec)
    pm.register(Impl())
    hook = pm.hook.on_step

    def measure() -> float:
        began = perf_counter()
        for i in range(calls):
            hook(execution_id="exec_x", index=i)
        return perf_counter() - began

    wall, _ = anyio.run(interleaved, {"pluggy": lambda: run_sync(measure)}, repeats, warmup)
    return summary(wall["pluggy"], scale=1e6 / calls)


def bench_step_overhead(repeats: int, warmup: int) -> dict[str, Any]:
    """A 1,000-step sync pipeline through the engine vs a plain loop, Hamilton as peer."""
    functions = make_step_functions(STEPS)
    pipeline = make_pipeline(functions)
    h_peers, h_version, h_skip = hamilton_peers(STEPS)
    if h_skip:
        console.print(f"[yellow]Hamilton row skipped:[/] {h_skip}")

    def plain() -> float:
        began = perf_counter()
        value = 0
        for fn in functions:
            value = fn(value)
        elapsed = perf_counter() - began
        assert value == STEPS
        return elapsed

    async def main() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        engine = Engine(load_entrypoints=False)

        async def stepstream_run() -> float:
            began = perf_counter()
            record = await engine.run(pipeline, {"x": 0})
            elapsed = perf_counter() - began
            assert record.status == "completed" and record.outputs == STEPS, record.status
            return elapsed

        peers: dict[str, Callable[[], Any]] = {
            "plain": lambda: run_sync(plain),
            "stepstream": stepstream_run,
        }
        for name, measure in h_peers.items():
            peers[name] = lambda m=measure: run_sync(m)
        return await interleaved(peers, repeats, warmup)

    wall, cpu = anyio.run(main)
    plain_wall = statistics.median(wall["plain"])
    plain_cpu = statistics.median(cpu["plain"])
    rows: dict[str, Any] = {"plain": {"total_ms": summary(wall["plain"], 1e3)}}
    for name in ("stepstream", "hamilton_bare", "hamilton_hook"):
        if name not in wall:
            continue
        rows[name] = {
            "total_ms": summary(wall[name], 1e3),
            "overhead_us_per_step": summary([(t - plain_wall) / STEPS * 1e6 for t in wall[name]]),
            "cpu_overhead_us_per_step": summary([(t - plain_cpu) / STEPS * 1e6 for t in cpu[name]]),
            "ratio_to_plain": statistics.median(wall[name]) / plain_wall,
        }
    unit = pluggy_unit(100_000, PLUGGY_REPEATS, warmup)
    rows["pluggy_call"] = {"us_per_call": unit}
    step_us = rows["stepstream"]["overhead_us_per_step"]["median"]
    step_cpu_us = rows["stepstream"]["cpu_overhead_us_per_step"]["median"]
    for name in ("hamilton_bare", "hamilton_hook"):
        if name in rows:
            rows[name]["stepstream_over_this"] = (
                step_us / rows[name]["overhead_us_per_step"]["median"]
            )
            rows[name]["stepstream_over_this_cpu"] = (
                step_cpu_us / rows[name]["cpu_overhead_us_per_step"]["median"]
            )
    rows["stepstream"]["steps_per_pluggy_unit"] = step_us / unit["median"]
    return {
        "steps": STEPS,
        "target_us_per_step": TARGET_STEP_US,
        "meets_target": step_us <= TARGET_STEP_US,
        "meets_target_cpu": step_cpu_us <= TARGET_STEP_US,
        "hamilton_version": h_version,
        "hamilton_skipped": h_skip,
        "rows": rows,
    }


# -- 2. Progress.advance and Progress.iter vs tqdm ------------------------------------


def bench_progress(calls: int, repeats: int, warmup: int) -> dict[str, Any]:
    """advance()/iter() inside a running step against tqdm.update()/tqdm iteration."""
    pipeline = Pipeline("progress_loop")

    @pipeline.step
    def loop(mode: str, n: int, progress: Progress) -> float:
        began = perf_counter()
        if mode == "advance":
            for _ in range(n):
                progress.advance()
        else:
            for _ in progress.iter(range(n)):
                pass
        elapsed = perf_counter() - began
        assert progress.done == n
        return elapsed

    def empty_loop() -> float:
        began = perf_counter()
        for _ in range(calls):
            pass
        return perf_counter() - began

    def tqdm_update() -> float:
        bar = tqdm(total=calls, disable=False, file=io.StringIO(), mininterval=0.05)
        began = perf_counter()
        for _ in range(calls):
            bar.update()
        elapsed = perf_counter() - began
        bar.close()
        return elapsed

    def tqdm_iter() -> float:
        began = perf_counter()
        for _ in tqdm(range(calls), disable=False, file=io.StringIO(), mininterval=0.05):
            pass
        return perf_counter() - began

    async def main() -> tuple[dict[str, list[float]], dict[str, int]]:
        engine = Engine(load_entrypoints=False)
        events = {"emitted": 0, "logged": 0}

        def in_step(mode: str) -> Callable[[], Any]:
            async def measure() -> float:
                record = await engine.run(pipeline, {"mode": mode, "n": calls})
                assert record.status == "completed", record.error
                logged = len(engine.events(record.execution_id))
                events["emitted"] = max(events["emitted"], record.last_seq)
                events["logged"] = max(events["logged"], logged)
                return float(record.outputs)

            return measure

        peers: dict[str, Callable[[], Any]] = {
            "empty_loop": lambda: run_sync(empty_loop),
            "stepstream_advance": in_step("advance"),
            "tqdm_update": lambda: run_sync(tqdm_update),
            "stepstream_iter": in_step("iter"),
            "tqdm_iter": lambda: run_sync(tqdm_iter),
        }
        wall, _ = await interleaved(peers, repeats, warmup)
        return wall, events

    times, events = anyio.run(main)
    ns = 1e9 / calls
    rows = {name: {"ns_per_call": summary(samples, ns)} for name, samples in times.items()}
    empty = rows["empty_loop"]["ns_per_call"]["median"]
    for name in ("stepstream_advance", "tqdm_update", "stepstream_iter", "tqdm_iter"):
        rows[name]["ns_per_call_net_of_loop"] = rows[name]["ns_per_call"]["median"] - empty
    adv = rows["stepstream_advance"]["ns_per_call"]["median"]
    itr = rows["stepstream_iter"]["ns_per_call"]["median"]
    rows["stepstream_advance"]["ratio_to_tqdm"] = adv / rows["tqdm_update"]["ns_per_call"]["median"]
    rows["stepstream_iter"]["ratio_to_tqdm"] = itr / rows["tqdm_iter"]["ns_per_call"]["median"]
    return {
        "calls": calls,
        "meets_target": rows["stepstream_advance"]["ratio_to_tqdm"] <= 1.0,
        "max_events_per_execution": events,
        "rows": rows,
    }


# -- 3. memory of a finished execution ---------------------------------------------


def payload_size(value: Any) -> int:
    """Bytes of JSON-like data (getsizeof, through dicts and lists); None costs nothing."""
    if value is None:
        return 0
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(payload_size(k) + payload_size(v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        size += sum(payload_size(item) for item in value)
    return size


def bench_memory() -> dict[str, Any]:
    """What one finished 10-step execution keeps: record plus event log, by tracemalloc."""
    pipeline = Pipeline("ten_steps")

    def make(i: int) -> Callable[..., Any]:
        if i == 0:

            def first(n: int, progress: Progress) -> int:
                progress.total = MEMORY_ITEMS
                for _ in range(MEMORY_ITEMS):
                    progress.advance()
                return n

            return first

        def later(value: int, progress: Progress) -> int:
            for _ in progress.iter(range(MEMORY_ITEMS)):
                value += 1
            return value

        return later

    for i in range(MEMORY_STEPS):
        pipeline.step(name=f"step_{i}")(make(i))

    async def main() -> dict[str, Any]:
        engine = Engine(load_entrypoints=False)
        for _ in range(3):
            await engine.run(pipeline, {"n": 1})
        gc.collect()
        tracemalloc.start()
        gc.collect()
        before = tracemalloc.take_snapshot()
        record = await engine.run(pipeline, {"n": 1})
        execution_id = record.execution_id
        outputs = record.outputs
        del record
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        outputs_bytes = payload_size(outputs)
        diff = after.compare_to(before, "lineno")
        package = str(Path(stepstream.__file__).parent)
        own = [stat for stat in diff if stat.traceback[0].filename.startswith(package)]
        retained = sum(stat.size_diff for stat in own) - outputs_bytes
        process = (
            sum(
                stat.size_diff
                for stat in diff
                if stat.traceback[0].filename != tracemalloc.__file__
            )
            - outputs_bytes
        )
        record = engine.get(execution_id)
        events = engine.events(execution_id)
        record_json = len(msgspec.json.encode(record))
        events_json = sum(len(msgspec.json.encode(e)) for e in events)
        kinds: dict[str, int] = {}
        for event in events:
            kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
        top = sorted(own, key=lambda stat: -stat.size_diff)[:10]
        return {
            "steps": MEMORY_STEPS,
            "items_per_step": MEMORY_ITEMS,
            "events_logged": len(events),
            "events_by_type": kinds,
            "retained_bytes": retained,
            "retained_bytes_per_event": retained / len(events),
            "process_growth_bytes": process,
            "outputs_bytes": outputs_bytes,
            "record_json_bytes": record_json,
            "events_json_bytes": events_json,
            "encoded_bytes": record_json + events_json,
            "target_bytes": TARGET_MEMORY_BYTES,
            "meets_target": retained < TARGET_MEMORY_BYTES,
            "top_lines": [
                {
                    "where": f"{Path(stat.traceback[0].filename).name}:{stat.traceback[0].lineno}",
                    "bytes": stat.size_diff,
                    "blocks": stat.count_diff,
                }
                for stat in top
            ],
        }

    return anyio.run(main)


# -- 4. short chains: the fixed cost of one execution -------------------------------


SHORT_CHAINS = (1, 10, 100)
SHORT_CALLS = {1: 400, 10: 200, 100: 40}  # executions per sample


def hamilton_driver(n: int) -> Callable[[], Any] | None:
    """One bare Hamilton execution of the n-node chain, or None without Hamilton."""
    try:
        from hamilton import base, driver
    except ImportError:
        return None
    dr = driver.Builder().with_modules(hamilton_module(n)).with_adapters(base.DictResult()).build()
    final = f"s{n - 1}"
    return lambda: dr.execute([final], inputs={"x": 0})


def bench_short_chains(repeats: int, warmup: int) -> dict[str, Any]:
    """Chains of 1, 10 and 100 steps: CPU per execution, fixed cost included, vs Hamilton.

    `engine.run` runs on one event loop kept for the whole benchmark; `Pipeline.run`
    is called from plain code, as a script would. Every peer of every length takes
    one sample per round, rounds alternating the order.
    """
    loop = asyncio.Runner()
    engine = Engine(load_entrypoints=False)
    peers: dict[str, Callable[[], None]] = {}
    for n in SHORT_CHAINS:
        pipeline, calls = make_pipeline(make_step_functions(n)), SHORT_CALLS[n]

        async def engine_runs(pipeline: Pipeline = pipeline, calls: int = calls) -> None:
            for _ in range(calls):
                await engine.run(pipeline, {"x": 0})

        def pipeline_runs(pipeline: Pipeline = pipeline, calls: int = calls) -> None:
            for _ in range(calls):
                pipeline.run(x=0)

        peers[f"engine.run/{n}"] = lambda runs=engine_runs: loop.run(runs())
        peers[f"Pipeline.run/{n}"] = pipeline_runs
        hamilton = hamilton_driver(n)
        if hamilton is not None:

            def hamilton_runs(execute: Callable[[], Any] = hamilton, calls: int = calls) -> None:
                for _ in range(calls):
                    execute()

            peers[f"hamilton/{n}"] = hamilton_runs
    samples: dict[str, list[float]] = {name: [] for name in peers}
    names = list(peers)
    for round_no in range(warmup + repeats):
        for name in names if round_no % 2 == 0 else list(reversed(names)):
            gc.collect()
            began = process_time()
            peers[name]()
            spent = process_time() - began
            if round_no >= warmup:
                samples[name].append(spent / SHORT_CALLS[int(name.split("/")[1])] * 1e6)
    loop.close()
    rows: dict[str, Any] = {}
    for n in SHORT_CHAINS:
        row: dict[str, Any] = {}
        for peer in ("engine.run", "Pipeline.run", "hamilton"):
            if f"{peer}/{n}" in samples:
                row[peer] = {"cpu_us_per_execution": summary(samples[f"{peer}/{n}"])}
        if "hamilton" in row:
            hamilton_us = row["hamilton"]["cpu_us_per_execution"]["median"]
            for peer in ("engine.run", "Pipeline.run"):
                row[peer]["ratio_to_hamilton"] = (
                    row[peer]["cpu_us_per_execution"]["median"] / hamilton_us
                )
        rows[str(n)] = row
    return {"calls": SHORT_CALLS, "rows": rows}


# -- reporting --------------------------------------------------------------------


def git(*args: str) -> str:
    """Output of a read-only git command in this repository, or '' without git."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("stepstream", "pluggy", "msgspec", "anyio", "tqdm", "apache-hamilton"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    package = Path(stepstream.__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.read_bytes())
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework_sources_sha256": digest.hexdigest()[:12],
        "git_head": git("rev-parse", "--short", "HEAD"),
        "framework_dirty": bool(git("status", "--porcelain", "--", str(package))),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def fmt(stats: dict[str, Any], unit: str, digits: int = 2) -> str:
    """`median unit (±half the interquartile range, in % of the median)`."""
    return f"{stats['median']:.{digits}f} {unit} (±{stats['spread'] * 50:.0f}%)"


def print_report(result: dict[str, Any]) -> None:
    """A readable table per section run."""
    info = result["machine"]
    console.print(
        f"[bold]stepstream core benchmarks[/] {info['date']} · {info['cpu']} · "
        f"{info['cores']} cores · Python {info['python']} · medians of {result['step_repeats']} "
        f"(section 1) and {result['repeats']} (section 2) interleaved rounds after "
        f"{result['warmup']} warm-up rounds; ± = half the interquartile range\n"
        f"load average {info['load_average_1min']} at start · framework {info['git_head']}"
        f"{' + uncommitted changes' if info['framework_dirty'] else ''}, "
        f"sources sha256 {info['framework_sources_sha256']}"
    )
    if max(info["load_average_1min"], result["load_average_1min_at_end"]) > 1.0:
        console.print(
            f"[yellow]machine busy (load {info['load_average_1min']} → "
            f"{result['load_average_1min_at_end']} on {info['cores']} cores): wall-clock "
            "figures of threaded code inflate first; compare the CPU columns and the ratios[/]"
        )
    for key, show in (
        ("step_overhead", print_steps),
        ("progress", print_progress),
        ("memory", print_memory),
        ("short_chains", print_short_chains),
    ):
        if key in result:
            show(result)


def print_steps(result: dict[str, Any]) -> None:
    """Section 1: per-step overhead against its peers."""
    steps = result["step_overhead"]
    rows = steps["rows"]
    table = Table(title=f"1. Per-step overhead, {steps['steps']}-step sync chain vs plain loop")
    for col in (
        "peer",
        "total",
        "vs plain",
        "overhead/step",
        "CPU overhead/step",
        "stepstream ÷ peer (wall, CPU)",
    ):
        table.add_column(col, justify="right" if col != "peer" else "left")
    table.add_row(
        "plain Python loop (baseline)",
        fmt(rows["plain"]["total_ms"], "ms", 3),
        "1.0x",
        "-",
        "-",
        "-",
    )
    labels = {
        "stepstream": "stepstream engine.run (tracker, no subscriber)",
        "hamilton_bare": f"Hamilton {steps['hamilton_version']} bare",
        "hamilton_hook": f"Hamilton {steps['hamilton_version']} + NodeExecutionHook",
    }
    for name, label in labels.items():
        if name not in rows:
            continue
        row = rows[name]
        table.add_row(
            label,
            fmt(row["total_ms"], "ms", 2),
            f"{row['ratio_to_plain']:.0f}x",
            fmt(row["overhead_us_per_step"], "µs"),
            fmt(row["cpu_overhead_us_per_step"], "µs"),
            (
                f"{row['stepstream_over_this']:.2f}, {row['stepstream_over_this_cpu']:.2f}"
                if "stepstream_over_this" in row
                else "-"
            ),
        )
    unit = rows["pluggy_call"]["us_per_call"]
    table.add_row("one pluggy hook call, one impl (unit)", "-", "-", fmt(unit, "µs"), "-", "-")
    if steps["hamilton_skipped"]:
        table.add_row("Hamilton (skipped, see below)", "-", "-", "-", "-", "-")
    console.print(table)
    verdict = "meets" if steps["meets_target"] else "MISSES"
    cpu_verdict = "meets" if steps["meets_target_cpu"] else "misses"
    console.print(
        f"stepstream: {rows['stepstream']['overhead_us_per_step']['median']:.2f} µs/step "
        f"= {rows['stepstream']['steps_per_pluggy_unit']:.1f} pluggy calls; "
        f"{verdict} the {steps['target_us_per_step']:.0f} µs/step target "
        f"(in CPU time: {rows['stepstream']['cpu_overhead_us_per_step']['median']:.2f} µs, "
        f"{cpu_verdict} it)"
    )
    if steps["hamilton_skipped"]:
        console.print(f"[yellow]{steps['hamilton_skipped']}[/]")


def print_progress(result: dict[str, Any]) -> None:
    """Section 2: Progress against tqdm."""
    prog = result["progress"]
    rows = prog["rows"]
    table = Table(
        title=f"2. Progress in a tight loop, {prog['calls']:,} calls, inside a running step"
    )
    for col in ("loop", "per call", "net of empty loop", "ratio to tqdm"):
        table.add_column(col, justify="right" if col != "loop" else "left")
    labels = {
        "empty_loop": "empty `for _ in range(n)` (reference)",
        "stepstream_advance": "progress.advance()",
        "tqdm_update": "tqdm.update() (baseline)",
        "stepstream_iter": "progress.iter(range(n))",
        "tqdm_iter": "tqdm(range(n)) (baseline)",
    }
    for name, label in labels.items():
        row = rows[name]
        net = row.get("ns_per_call_net_of_loop")
        ratio = row.get("ratio_to_tqdm")
        table.add_row(
            label,
            fmt(row["ns_per_call"], "ns", 1),
            "-" if net is None else f"{net:.1f} ns",
            "-" if ratio is None else f"{ratio:.2f}",
        )
    console.print(table)
    verdict = "meets" if prog["meets_target"] else "MISSES"
    console.print(
        f"advance() {verdict} the target (no more per call than tqdm.update); "
        f"at most {prog['max_events_per_execution']['emitted']} events emitted "
        f"({prog['max_events_per_execution']['logged']} kept in the log) "
        f"per {prog['calls']:,}-call execution"
    )


def print_memory(result: dict[str, Any]) -> None:
    """Section 3: memory of a finished execution."""
    mem = result["memory"]
    table = Table(
        title=f"3. Memory of one finished {mem['steps']}-step execution (record + event log)"
    )
    table.add_column("measure")
    table.add_column("bytes", justify="right")
    table.add_column("vs 10 KiB target", justify="right")
    for key, label in (
        ("retained_bytes", "tracemalloc: kept by stepstream code, minus outputs"),
        ("process_growth_bytes", "tracemalloc: whole process growth (context)"),
        ("record_json_bytes", "msgspec JSON of the record"),
        ("events_json_bytes", "msgspec JSON of the event log"),
        ("encoded_bytes", "msgspec JSON, record + events"),
    ):
        table.add_row(label, f"{mem[key]:,}", f"{mem[key] / mem['target_bytes']:.2f}")
    console.print(table)
    kinds = ", ".join(f"{n} {k}" for k, n in mem["events_by_type"].items())
    console.print(
        f"{mem['events_logged']} events logged ({kinds}), "
        f"{mem['retained_bytes_per_event']:.0f} B each on average; "
        f"{'meets' if mem['meets_target'] else 'MISSES'} the 10 KiB target"
    )


def print_short_chains(result: dict[str, Any]) -> None:
    """Section 4: short chains against Hamilton."""
    short = result["short_chains"]["rows"]
    table = Table(title="4. Short chains: CPU per execution, fixed cost included")
    for col in ("steps", "peer", "per execution", "per step", "÷ Hamilton bare"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    for n, row in short.items():
        for peer, stats in row.items():
            cpu = stats["cpu_us_per_execution"]
            ratio = stats.get("ratio_to_hamilton")
            table.add_row(
                n,
                "Hamilton bare" if peer == "hamilton" else peer,
                fmt(cpu, "µs", 1),
                f"{cpu['median'] / int(n):.1f} µs",
                "-" if ratio is None else f"{ratio:.2f}",
            )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, 100k calls")
    parser.add_argument("--step-repeats", type=int, default=STEP_REPEATS, help="rounds, section 1")
    parser.add_argument("--repeats", type=int, default=7, help="rounds, section 2")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/)")
    parser.add_argument(
        "--only",
        choices=("step_overhead", "progress", "memory", "short_chains"),
        help="run one section",
    )
    args = parser.parse_args()
    step_repeats, repeats, calls = (
        (5, 3, 100_000) if args.quick else (args.step_repeats, args.repeats, ADVANCE_CALLS)
    )

    result: dict[str, Any] = {
        "machine": machine(),
        "step_repeats": step_repeats,
        "repeats": repeats,
        "warmup": args.warmup,
    }
    sections = {
        "step_overhead": lambda: bench_step_overhead(step_repeats, args.warmup),
        "progress": lambda: bench_progress(calls, repeats, args.warmup),
        "memory": bench_memory,
        "short_chains": lambda: bench_short_chains(repeats, args.warmup),
    }
    for number, (key, bench) in enumerate(sections.items(), 1):
        if args.only in (None, key):
            with console.status(f"{number}/{len(sections)} {key}"):
                result[key] = bench()
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print_report(result)

    out = args.out
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS_DIR / f"bench_core-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"JSON: {out}")


if __name__ == "__main__":
    main()
