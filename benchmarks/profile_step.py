"""Where a sync step's overhead goes: layer by layer, component by component, and cProfile.

Run:  uv run python benchmarks/profile_step.py
Options: --repeats N, --no-cprofile, --out PATH (JSON; default benchmarks/results/).

Three views, each measured in this run:
1. Subtraction: the 1,000-step chain through engines that differ by one thing
   (no plugin on the step hooks / a no-op plugin / the tracker), so each layer's
   cost per step is a difference of medians (wall and CPU), with no profiler in the way.
2. Components: each operation the tracker does per step, timed alone (timeit).
3. cProfile, enabled on the worker thread from inside the first step and disabled
   in the last, so only the per-step path of the steps in between is recorded.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pluggy
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from bench_core import (
    RESULTS_DIR,
    STEPS,
    interleaved,
    machine,
    make_pipeline,
    make_step_functions,
)

from stepstream import Engine, Pipeline, hookimpl, hookspecs
from stepstream.model.events import ProgressEvent, ProgressSnapshot, StepState
from stepstream.stores.memory import MemoryStore

console = Console(width=132)


class NoOpPlugin:
    """Implements the hooks the tracker implements and does nothing: the dispatch cost alone."""

    @hookimpl
    def execution_started(self, execution_id: str) -> None:
        pass

    @hookimpl
    def step_started(self, execution_id: str, step: Any, index: int) -> None:
        pass

    @hookimpl
    def step_done(self, execution_id: str, index: int, duration: float) -> None:
        pass

    @hookimpl
    def execution_finished(self, execution_id: str, status: str, outputs: Any, error: Any) -> None:
        pass


def fire(pm: Any) -> Any:
    """What the runner fires hooks through: the relay if the manager has one, else pluggy."""
    return getattr(pm, "relay", pm.hook)


# -- 1. subtraction ----------------------------------------------------------------

LAYERS = (
    "runner loop, relay with no implementation, per-execution fixed cost",
    "dispatch to one implementation, 2 hooks (no-op plugin)",
    "tracker work in step_started + step_done",
)


def subtraction(repeats: int) -> dict[str, Any]:
    """Median wall-clock of the chain through engines that differ by one layer."""
    functions = make_step_functions(STEPS)
    chain = make_pipeline(functions)
    one = make_pipeline(functions[:1])

    def plain() -> float:
        began = perf_counter()
        value = 0
        for fn in functions:
            value = fn(value)
        return perf_counter() - began

    gc_seconds: list[float] = []

    async def main() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        full = Engine(load_entrypoints=False)
        bare = Engine(load_entrypoints=False)
        bare.plugins.unregister(name="tracker")
        noop = Engine(load_entrypoints=False)
        noop.plugins.unregister(name="tracker")
        noop.plugins.register(NoOpPlugin(), name="noop")

        async def hop() -> float:
            began = perf_counter()
            await anyio.to_thread.run_sync(int)
            return perf_counter() - began

        def timed(engine: Engine, pipeline: Pipeline) -> Callable[[], Any]:
            async def measure() -> float:
                began = perf_counter()
                await engine.run(pipeline, {"x": 0})
                return perf_counter() - began

            return measure

        clock = {"began": 0.0, "spent": 0.0}

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                clock["began"] = perf_counter()
            else:
                clock["spent"] += perf_counter() - clock["began"]

        async def tracker_with_gc_clock() -> float:
            clock["spent"] = 0.0
            gc.callbacks.append(on_gc)
            try:
                elapsed = await timed(full, chain)()
            finally:
                gc.callbacks.remove(on_gc)
            gc_seconds.append(clock["spent"])
            return elapsed

        async def sync_plain() -> float:
            return plain()

        peers = {
            "plain": sync_plain,
            "thread_hop": hop,
            "runner_no_impls": timed(bare, chain),
            "runner_noop_plugin": timed(noop, chain),
            "runner_tracker": tracker_with_gc_clock,
            "one_step_tracker": timed(full, one),
        }
        return await interleaved(peers, repeats, warmup=2)

    wall, cpu = anyio.run(main)
    us = 1e6 / STEPS
    result: dict[str, Any] = {"gc_us_per_step": statistics.median(gc_seconds) * us}
    for clock_name, times in (("wall", wall), ("cpu", cpu)):
        med = {name: statistics.median(samples) for name, samples in times.items()}
        result[clock_name] = {
            "median_ms": {name: value * 1e3 for name, value in med.items()},
            "overhead_us_per_step": (med["runner_tracker"] - med["plain"]) * us,
            "fixed_cost_per_execution_us": (med["one_step_tracker"] - med["plain"] / STEPS) * 1e6,
            "thread_hop_us": med["thread_hop"] * 1e6,
            "layers_us_per_step": {
                LAYERS[0]: (med["runner_no_impls"] - med["plain"]) * us,
                LAYERS[1]: (med["runner_noop_plugin"] - med["runner_no_impls"]) * us,
                LAYERS[2]: (med["runner_tracker"] - med["runner_noop_plugin"]) * us,
            },
        }
    return result


# -- 2. components -----------------------------------------------------------------


class UntrackedProgressEvent(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """What-if: ProgressEvent's fields on a Struct the cyclic GC never tracks (16 B smaller)."""

    execution_id: str
    seq: int
    progress: Any
    step: Any = None


def generated_fire(
    params: tuple[str, ...], impls: list[tuple[Callable[..., Any], tuple[str, ...]]]
) -> Callable[..., None]:
    """A relay alternative: one compiled function per hook that calls each impl positionally.

    Keyword-only parameters bind the caller's keywords without building a dict,
    and each implementation gets exactly its arguments without an itemgetter.
    """
    lines = [f"def fire(*, {', '.join(params)}):"]
    env: dict[str, Any] = {"failed": lambda i: None}
    for i, (function, argnames) in enumerate(impls):
        env[f"f{i}"] = function
        lines += [
            "    try:",
            f"        f{i}({', '.join(argnames)})",
            "    except Exception:",
            f"        failed({i})",
        ]
    if not impls:
        lines.append("    pass")
    exec("\n".join(lines), env)
    return env["fire"]


def components(repeats: int) -> dict[str, float]:
    """ns per operation for each thing a step's hooks do, timed alone (best of `repeats`)."""
    pipeline = make_pipeline(make_step_functions(STEPS))
    step = pipeline.steps[1]
    noop_pm = Engine(load_entrypoints=False).plugins
    noop_pm.unregister(name="tracker")
    noop_pm.register(NoOpPlugin(), name="noop")
    tracker_engine = Engine(load_entrypoints=False)
    tracker = tracker_engine.tracker
    record = tracker.create(pipeline, {"x": 0})
    eid = record.execution_id
    tracker.execution_started(execution_id=eid)
    lock = threading.Lock()
    now = datetime.now(UTC)
    snapshot = ProgressSnapshot(
        current_step=1,
        total_steps=1000,
        percentage=0.1,
        current_step_name="s1",
        elapsed_seconds=0.001,
        eta_seconds=0.9,
    )
    state = StepState(name="s1", index=1, status="running", weight=1.0, started_at=now)
    event = ProgressEvent(execution_id=eid, seq=5, progress=snapshot, step=state)
    store = MemoryStore()
    store.append(record, event)
    spec_pm = pluggy.PluginManager("stepstream")
    spec_pm.add_hookspecs(hookspecs)
    spec_pm.register(NoOpPlugin())
    counter = iter(range(10**9))
    generated = generated_fire(
        ("execution_id", "step", "index"),
        [(NoOpPlugin().step_started, ("execution_id", "step", "index"))],
    )
    namespace = {
        "datetime": datetime,
        "UTC": UTC,
        "time": time,
        "perf_counter": perf_counter,
        "ProgressSnapshot": ProgressSnapshot,
        "StepState": StepState,
        "ProgressEvent": ProgressEvent,
        "UntrackedProgressEvent": UntrackedProgressEvent,
        "lock": lock,
        "store": store,
        "event": event,
        "snapshot": snapshot,
        "state": state,
        "now": now,
        "record": record,
        "eid": eid,
        "step": step,
        "relay": fire(noop_pm),
        "pluggy_hook": spec_pm.hook,
        "tracker": tracker,
        "counter": counter,
        "noop": NoOpPlugin().step_started,
        "generated": generated,
    }
    statements = {
        "time.perf_counter()": "perf_counter()",
        "datetime.now(UTC)": "datetime.now(UTC)",
        "time.time() (alternative to datetime.now)": "time.time()",
        "ProgressSnapshot(10 fields by keyword, as _snapshot builds it)": (
            "ProgressSnapshot(current_step=1, total_steps=1000, percentage=0.1, "
            "current_step_name='s1', items_done=None, items_total=None, message=None, "
            "elapsed_seconds=0.001, rate=None, eta_seconds=0.9)"
        ),
        "ProgressSnapshot(only the 6 set fields by keyword)": (
            "ProgressSnapshot(current_step=1, total_steps=1000, percentage=0.1, "
            "current_step_name='s1', elapsed_seconds=0.001, eta_seconds=0.9)"
        ),
        "StepState(running)": (
            "StepState(name='s1', index=1, status='running', weight=1.0, started_at=now)"
        ),
        "StepState(completed, 8 fields)": (
            "StepState(name='s1', index=1, status='completed', weight=1.0, started_at=now, "
            "duration_seconds=0.001, items_done=None, items_total=None)"
        ),
        "ProgressEvent(...)": (
            "ProgressEvent(execution_id=eid, seq=5, progress=snapshot, step=state)"
        ),
        "what-if: the same fields on a Struct with gc=False": (
            "UntrackedProgressEvent(execution_id=eid, seq=5, progress=snapshot, step=state)"
        ),
        "with lock: pass": "with lock: pass",
        "MemoryStore.append(record, step event)": "store.append(record, event)",
        "direct call of a no-op method, 3 kwargs": ("noop(execution_id=eid, step=step, index=1)"),
        "relay.step_started, one no-op impl": (
            "relay.step_started(execution_id=eid, step=step, index=1)"
        ),
        "generated fire (keyword-only params, positional impl call), one no-op impl": (
            "generated(execution_id=eid, step=step, index=1)"
        ),
        "pluggy hook.step_started, one no-op impl": (
            "pluggy_hook.step_started(execution_id=eid, step=step, index=1)"
        ),
        "tracker.step_started + tracker.step_done (hook bodies, no dispatch)": (
            "i = next(counter) % 1000\n"
            "tracker.step_started(execution_id=eid, step=step, index=i)\n"
            "tracker.step_done(execution_id=eid, index=i, duration=0.0)"
        ),
    }
    results: dict[str, float] = {}
    for label, stmt in statements.items():
        number = 2_000 if "tracker." in stmt else 100_000
        timer = timeit.Timer(stmt, globals=namespace)
        timer.timeit(number // 10)
        best = min(timer.repeat(repeats, number))
        results[label] = best / number * 1e9
    return results


# -- 3. cProfile of the worker thread ----------------------------------------------


def profile(top: int) -> tuple[list[dict[str, Any]], float]:
    """cProfile of the steps between the first and the last, on the thread that runs them."""
    profiler = cProfile.Profile()
    functions = make_step_functions(STEPS)

    def start(x: Any) -> Any:
        """Enable the profiler on this (the worker) thread."""
        profiler.enable()
        return x + 1

    def stop(x: Any) -> Any:
        """Disable it before the runner leaves the thread."""
        profiler.disable()
        return x + 1

    chain = make_pipeline([start, *functions[1:-1], stop])

    async def main() -> None:
        engine = Engine(load_entrypoints=False)
        for _ in range(20):
            await engine.run(chain, {"x": 0})

    anyio.run(main)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    grouped: dict[str, list[float]] = {}
    for (filename, line, name), (_, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "<string>":
            label = "the step functions themselves (x + 1)"
        elif name in ("start", "stop") or "_lsprof" in name:
            continue
        else:
            label = f"{Path(filename).name}:{line}({name})" if line else name
        calls, own, cumulative = grouped.get(label, [0.0, 0.0, 0.0])
        grouped[label] = [calls + nc, own + tt, max(cumulative, ct)]
    rows = [
        {
            "function": label,
            "calls_per_step": calls / (20 * (STEPS - 2)),
            "tottime_share": own / total,
            "cumtime_share": cumulative / total,
        }
        for label, (calls, own, cumulative) in grouped.items()
    ]
    rows.sort(key=lambda row: -row["tottime_share"])
    return rows[:top], total


# -- report ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    info = machine()
    console.print(
        f"[bold]per-step profile[/] {info['date']} · {info['cpu']} · {info['cores']} cores · "
        f"framework {info['git_head']}{' + uncommitted changes' if info['framework_dirty'] else ''}"
        f", sources sha256 {info['framework_sources_sha256']}"
    )
    result: dict[str, Any] = {"machine": info}
    with console.status("subtraction"):
        sub = result["subtraction"] = subtraction(args.repeats)
    table = Table(
        title=f"1. Per-step overhead by layer ({STEPS}-step chain, medians of {args.repeats})"
    )
    table.add_column("layer")
    table.add_column("µs / step, wall", justify="right")
    table.add_column("µs / step, CPU", justify="right")
    for layer in LAYERS:
        table.add_row(
            layer,
            f"{sub['wall']['layers_us_per_step'][layer]:.2f}",
            f"{sub['cpu']['layers_us_per_step'][layer]:.2f}",
        )
    table.add_row(
        "[bold]total overhead vs plain loop",
        f"[bold]{sub['wall']['overhead_us_per_step']:.2f}",
        f"[bold]{sub['cpu']['overhead_us_per_step']:.2f}",
    )
    console.print(table)
    fixed = sub["wall"]["fixed_cost_per_execution_us"]
    console.print(
        f"fixed cost of one execution (1-step pipeline, whole engine.run): {fixed:.0f} µs wall "
        f"({sub['cpu']['fixed_cost_per_execution_us']:.0f} µs CPU) = {fixed / STEPS:.2f} µs/step "
        f"over {STEPS} steps; one anyio.to_thread.run_sync hop: "
        f"{sub['wall']['thread_hop_us']:.0f} µs wall; cyclic GC inside the 1,000-step run "
        f"(timed by gc.callbacks): {sub['gc_us_per_step']:.2f} µs/step"
    )

    with console.status("components"):
        comp = result["components_ns"] = components(args.repeats)
    table = Table(title="2. Components, each timed alone (timeit, best of repeats, GC off)")
    table.add_column("operation")
    table.add_column("ns", justify="right")
    for label, value in comp.items():
        table.add_row(label, f"{value:,.0f}")
    console.print(table)

    if not args.no_cprofile:
        with console.status("cProfile"):
            rows, total = profile(25)
        result["cprofile"] = {"total_seconds": total, "top": rows}
        table = Table(
            title="3. cProfile of the worker thread, per step (the profiler inflates small calls)"
        )
        table.add_column("function")
        table.add_column("calls / step", justify="right")
        table.add_column("own time", justify="right")
        table.add_column("incl. callees", justify="right")
        for row in rows:
            table.add_row(
                row["function"],
                f"{row['calls_per_step']:.2f}",
                f"{row['tottime_share']:.1%}",
                f"{row['cumtime_share']:.1%}",
            )
        console.print(table)

    out = args.out or RESULTS_DIR / f"profile_step-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"JSON: {out}")


if __name__ == "__main__":
    main()
