"""Benchmarks of the stores: SQLite against the memory store in the same run, as ratios.

Run:  uv run python benchmarks/bench_store.py             (about five minutes)
      uv run python benchmarks/bench_store.py --quick     (smoke run)
Options: --only steps|long|history|status (repeatable), --out PATH (JSON file).

1. steps: per-step cost of an N-step sync pipeline (N = 1,000, 10,000, 100,000) with
   `Engine(store="sqlite:///…")` against `Engine(store="memory://")`, `await engine.run(...)`,
   in alternating rounds; the ratio is taken per round (SQLite over memory) and reported
   as median and spread, of wall time and of the process's CPU time (every thread, the
   writer's commits until the round's flush included); with the bytes the process wrote
   (/proc/self/io `wchar`: the WAL, checkpoints) per execution and per step.
2. long: one execution that, after 10,000 finished steps, runs a step reporting items as
   fast as it can (progress events at the engine's default interval): bytes written per
   minute while it runs.
3. history: 10,000 executions of a small pipeline recorded in SQLite; list-page and
   single-record latency through `store.list`/`store.get` and through a real
   `stepstream serve`, and the database size per execution.
4. status: `MemoryStore.list(status=...)` at 1,000 and 10,000 records (one in ten running).

Every section notes the load average before and after it.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sqlite3
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import anyio
import msgspec
from bench_server import Child, environment, fmt, percentile, stepstream_serve, summary

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import ExecutionRecord, encode
from stepstream.model.fold import apply_event, status_of
from stepstream.stores.memory import MemoryStore
from stepstream.stores.sqlite import SqliteStore

SIZES = (1_000, 10_000, 100_000)
EXECUTIONS = 10_000
TARGET_RATIO = 1.3
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def written_bytes() -> int:
    """Bytes this process has handed to write() so far (the WAL and checkpoints, for SQLite)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def _db_bytes(db: Path) -> int:
    """The file and any write-ahead log left beside it."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


# -- 1. per-step cost at 1,000 to 100,000 steps ------------------------------------------------


def make_chain(steps: int) -> Pipeline:
    """`steps` trivial sync steps, `x + 1` each."""

    def add_one(x: int) -> int:
        return x + 1

    chain = Pipeline(f"chain-{steps}", description=f"{steps} trivial sync steps")
    for i in range(steps):
        chain.step(name=f"s{i}")(add_one)
    return chain


async def bench_steps(tmp: Path, quick: bool) -> dict[str, Any]:
    """Per size: alternating rounds of the memory and the SQLite store (flushed each round)."""
    sizes = (1_000, 10_000) if quick else SIZES
    result: dict[str, Any] = {"load_before": load_average(), "sizes": {}}
    for steps in sizes:
        rounds = 3 if quick else (5 if steps >= 100_000 else 7)
        chain = make_chain(steps)
        engines = {
            "memory": Engine(store="memory://", load_entrypoints=False),
            "sqlite": Engine(
                store=f"sqlite:///{tmp / f'steps-{steps}.db'}", load_entrypoints=False
            ),
        }
        per_step: dict[str, list[float]] = {name: [] for name in engines}
        cpu_per_step: dict[str, list[float]] = {name: [] for name in engines}
        wrote: list[float] = []
        for round_no in range(rounds + 1):  # the first is a warmup
            names = list(engines) if round_no % 2 else list(reversed(engines))
            for name in names:
                gc.collect()
                before, cpu = written_bytes(), process_time()
                record = await engines[name].run(chain, {"x": 0})
                engines[name].store.flush()
                cpu = process_time() - cpu
                assert record.status == "completed" and record.outputs == steps
                if round_no == 0:
                    continue
                wall = (record.finished_at - record.started_at).total_seconds()  # type: ignore[operator]
                per_step[name].append(wall / steps * 1e6)
                cpu_per_step[name].append(cpu / steps * 1e6)
                if name == "sqlite":
                    wrote.append(written_bytes() - before)
        for engine in engines.values():
            engine.store.close()
        ratios = [s / m for s, m in zip(per_step["sqlite"], per_step["memory"], strict=True)]
        cpu_ratios = [
            s / m for s, m in zip(cpu_per_step["sqlite"], cpu_per_step["memory"], strict=True)
        ]
        result["sizes"][str(steps)] = {
            "rounds": rounds,
            "per_step_us": {name: summary(v) for name, v in per_step.items()},
            "ratio": summary(ratios),
            "cpu_per_step_us": {name: summary(v) for name, v in cpu_per_step.items()},
            "cpu_ratio": summary(cpu_ratios),
            "bytes_per_execution": summary(wrote),
            "bytes_per_step": sum(wrote) / len(wrote) / steps,  # checkpoints fall in some rounds
        }
    result["load_after"] = load_average()
    return result


# -- 2. a long-running execution -----------------------------------------------------------


def make_long(steps: int, seconds: float, marks: list[tuple[float, int]]) -> Pipeline:
    """`steps` quick steps, then one that reports items as fast as it can for `seconds`,
    noting (time, bytes written) into `marks` one second in (the quick steps are written
    by then) and as it ends."""
    long = Pipeline(f"long-{steps}", description="quick steps, then a long one counting items")

    def quick(x: int) -> int:
        return x + 1

    def counting(x: int, progress: Progress) -> int:
        began = perf_counter()
        marked = False
        while (now := perf_counter()) < began + seconds:
            progress.advance()
            if not marked and now > began + 1.0:
                marks.append((now, written_bytes()))
                marked = True
        marks.append((perf_counter(), written_bytes()))
        return x

    for i in range(steps):
        long.step(name=f"s{i}")(quick)
    long.step(name="counting")(counting)
    return long


async def bench_long(tmp: Path, quick: bool) -> dict[str, Any]:
    """Bytes the SQLite store writes per minute while the long step runs, over several rounds."""
    seconds, rounds = (2.0, 2) if quick else (7.0, 5)
    steps = 10_000
    marks: list[tuple[float, int]] = []
    pipeline = make_long(steps, seconds, marks)
    engine = Engine(store=f"sqlite:///{tmp / 'long.db'}", load_entrypoints=False)
    per_minute, events = [], []
    began_load = load_average()
    for _ in range(rounds):
        gc.collect()
        marks.clear()
        record = await engine.run(pipeline, {"x": 0})
        (t0, b0), (t1, b1) = marks
        per_minute.append((b1 - b0) / (t1 - t0) * 60)
        events.append(record.last_seq)
    engine.store.close()
    return {
        "steps_before": steps,
        "seconds": seconds,
        "rounds": rounds,
        "bytes_per_minute": summary(per_minute),
        "events_per_execution": statistics.median(events),
        "load": [began_load, load_average()],
    }


# -- 3. 10,000 recorded executions ------------------------------------------------------------


small = Pipeline("small", description="Three steps, one of them counting items")


@small.step
def load(rows: int) -> list[int]:
    return list(range(rows))


@small.step
def work(values: list[int], progress: Progress) -> int:
    progress.message = "summing"
    return sum(v for v in progress.iter(values))


@small.step
def save(total: int) -> dict[str, int]:
    return {"total": total}


async def record_executions(db: Path, count: int) -> dict[str, Any]:
    """Run `small` `count` times into a fresh SQLite file; how long it took and what it wrote."""
    engine = Engine(store=f"sqlite:///{db}", load_entrypoints=False)
    store = engine.store
    began = perf_counter()
    last = None
    for _ in range(count):
        last = await engine.run(small, {"rows": 100})
    ran = perf_counter() - began
    store.flush()
    flushed = perf_counter() - began
    assert last is not None and last.status == "completed"
    events = store.events(last.execution_id)
    store.close()
    return {
        "executions": count,
        "run_seconds": ran,
        "until_committed_seconds": flushed,
        "record_json_bytes": len(encode(last)),
        "events_per_execution": len(events),
        "events_json_bytes": len(encode(events)),
        "db_bytes": _db_bytes(db),
    }


def _timed(call: Any, repeats: int) -> dict[str, Any]:
    """Latency of `call()` (given a round number), in milliseconds, over `repeats` calls."""
    times = []
    for i in range(repeats):
        began = perf_counter()
        call(i)
        times.append((perf_counter() - began) * 1e3)
    ordered = sorted(times)
    return {**summary(times), "p90": percentile(ordered, 90), "p99": percentile(ordered, 99)}


def _ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT execution_id FROM executions ORDER BY 1 DESC")]


def store_reads(db: Path, ids: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """store.list and store.get called directly."""
    store = SqliteStore(db)
    middle = ids[len(ids) // 2]
    rng = random.Random(7)
    picks = [rng.choice(ids) for _ in range(repeats)]
    try:
        for _ in range(20):
            store.list(limit=51)
        return {
            "store.list(limit=51), newest page": _timed(lambda i: store.list(limit=51), repeats),
            "store.list(limit=51, before=<middle id>)": _timed(
                lambda i: store.list(limit=51, before=middle), repeats
            ),
            "store.list(status='completed', limit=51)": _timed(
                lambda i: store.list(status="completed", limit=51), repeats
            ),
            "store.get(<random id>)": _timed(lambda i: store.get(picks[i]), repeats),
        }
    finally:
        store.close()


def server_reads(db: Path, ids: list[str], tmp: Path, repeats: int) -> dict[str, dict[str, Any]]:
    """The same reads through a real `stepstream serve` on this file, one request at a time."""
    import httpx

    middle = ids[len(ids) // 2]
    rng = random.Random(11)
    picks = [rng.choice(ids) for _ in range(repeats)]
    child: Child = stepstream_serve(tmp, "history-server", f"sqlite:///{db}")
    with child, httpx.Client(base_url=child.url, timeout=30) as http:

        def get(path: str) -> None:
            response = http.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")

        api = "/api/v1/executions"
        page = http.get(f"{api}?limit=50").json()
        assert len(page["items"]) == 50 and page["next_cursor"], page.keys()
        for _ in range(20):
            get(f"{api}?limit=50")
        return {
            "GET /health (floor: client + HTTP)": _timed(lambda i: get("/health"), repeats),
            "GET /api/v1/executions?limit=50": _timed(lambda i: get(f"{api}?limit=50"), repeats),
            "GET …?limit=50&cursor=<middle id>": _timed(
                lambda i: get(f"{api}?limit=50&cursor={middle}"), repeats
            ),
            "GET /api/v1/executions/{random id}": _timed(
                lambda i: get(f"{api}/{picks[i]}"), repeats
            ),
        }


def bench_history(tmp: Path, quick: bool) -> dict[str, Any]:
    """Record the executions, then read them directly and through the server."""
    count = 1_000 if quick else EXECUTIONS
    repeats = 100 if quick else 300
    db = tmp / "history.db"
    written = anyio.run(record_executions, db, count)
    ids = _ids(db)
    assert len(ids) == count, len(ids)
    return {
        "written": written,
        "db_bytes_per_execution": written["db_bytes"] / count,
        "store": store_reads(db, ids, repeats),
        "server": server_reads(db, ids, tmp, repeats),
    }


# -- 4. the memory store's status filter ---------------------------------------------------


def memory_store_with(count: int) -> MemoryStore:
    """`count` records, one in ten running and the rest completed, as the fold leaves them."""
    store = MemoryStore()
    for i in range(count):
        record = ExecutionRecord(
            execution_id=f"exec_{i:08d}",
            pipeline="p",
            status="pending",
            progress=None,
            inputs={},
            created_at=datetime.now(UTC),
            steps=[],
        )
        for seq, status in enumerate(("pending", "completed" if i % 10 else "running"), 1):
            record.status = status
            event = status_of(record, seq)
            apply_event(record, event)
            store.append(record, event)
    return store


def bench_status(quick: bool) -> dict[str, Any]:
    """`list(status=..., limit=50)` latency at 1,000 and 10,000 records, alternating rounds."""
    repeats = 50 if quick else 300
    stores = {count: memory_store_with(count) for count in (1_000, 10_000)}
    found: dict[str, Any] = {"load_before": load_average()}
    for status in ("running", "completed"):
        times: dict[int, list[float]] = {count: [] for count in stores}
        for i in range(repeats):
            for count in sorted(stores, reverse=bool(i % 2)):
                began = perf_counter()
                stores[count].list(status=status, limit=50)  # type: ignore[arg-type]
                times[count].append((perf_counter() - began) * 1e3)
        found[status] = {str(count): summary(t) for count, t in times.items()}
        found[status]["ratio_10k_to_1k"] = (
            found[status]["10000"]["median"] / found[status]["1000"]["median"]
        )
    found["load_after"] = load_average()
    return found


# -- reporting --------------------------------------------------------------------------------


def show(results: dict[str, Any]) -> None:
    """Print one table per section."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    if "steps" in results:
        r = results["steps"]
        table = Table(
            title="1. N-step sync pipeline, engine.run, SQLite vs memory store (alternating "
            f"rounds; load {r['load_before']} before, {r['load_after']} after)"
        )
        for col in (
            "steps",
            "rounds",
            "memory µs/step",
            "sqlite µs/step",
            "ratio (per round)",
            "ratio min-max",
            "CPU ratio",
            "target",
            "written per execution",
            "B/step",
        ):
            table.add_column(col, justify="right")
        for steps, row in r["sizes"].items():
            ratio = row["ratio"]
            table.add_row(
                f"{int(steps):,}",
                str(row["rounds"]),
                fmt(row["per_step_us"]["memory"], digits=2),
                fmt(row["per_step_us"]["sqlite"], digits=2),
                f"{fmt(ratio, digits=2)} (spread {ratio['spread']:.0%})",
                f"{ratio['min']:.2f}-{ratio['max']:.2f}",
                f"{fmt(row['cpu_ratio'], digits=2)} ({row['cpu_ratio']['min']:.2f}-"
                f"{row['cpu_ratio']['max']:.2f})",
                f"≤ {TARGET_RATIO}",
                f"{row['bytes_per_execution']['median'] / 2**20:.2f} MiB",
                f"{row['bytes_per_step']:.0f}",
            )
        console.print(table)
    if "long" in results:
        r = results["long"]
        m = r["bytes_per_minute"]
        console.print(
            f"2. long step after {r['steps_before']:,} finished ones, counting items for "
            f"{r['seconds']:.0f} s ({r['rounds']} rounds, load {r['load'][0]} → {r['load'][1]}): "
            f"{m['median'] / 2**20:.2f} MiB written per minute "
            f"(min-max {m['min'] / 2**20:.2f}-{m['max'] / 2**20:.2f}, spread {m['spread']:.0%}); "
            f"{r['events_per_execution']:,.0f} events per execution"
        )
    if "status" in results:
        r = results["status"]
        table = Table(
            title="4. MemoryStore.list(status=..., limit=50), ms "
            f"(load {r['load_before']} → {r['load_after']})"
        )
        for col in ("status", "1,000 records", "10,000 records", "10k / 1k"):
            table.add_column(col, justify="right")
        for status in ("running", "completed"):
            row = r[status]
            table.add_row(
                status,
                fmt(row["1000"], digits=3),
                fmt(row["10000"], digits=3),
                f"{row['ratio_10k_to_1k']:.2f}",
            )
        console.print(table)
    if "history" in results:
        r = results["history"]
        w = r["written"]
        table = Table(
            title=f"3. {w['executions']:,} recorded executions of a 3-step pipeline in SQLite "
            "(latency in ms, one call at a time)"
        )
        for col in ("read", "median ± ½IQR", "p90", "p99", "max"):
            table.add_column(col, justify="left" if col == "read" else "right")
        for group in ("store", "server"):
            for name, t in r[group].items():
                table.add_row(
                    name, fmt(t, digits=3), f"{t['p90']:.3f}", f"{t['p99']:.3f}", f"{t['max']:.3f}"
                )
        console.print(table)
        console.print(
            f"database: {w['db_bytes'] / 2**20:.1f} MiB, {r['db_bytes_per_execution']:,.0f} "
            f"bytes per execution (record JSON {w['record_json_bytes']} B, "
            f"{w['events_per_execution']} events {w['events_json_bytes']} B); "
            f"recorded in {w['run_seconds']:.1f} s "
            f"({w['executions'] / w['run_seconds']:,.0f} executions/s), all committed after "
            f"{w['until_committed_seconds']:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument("--only", action="append", choices=["steps", "long", "history", "status"])
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    wanted = set(args.only or ["steps", "long", "history", "status"])
    results: dict[str, Any] = {"environment": environment()}
    with tempfile.TemporaryDirectory(prefix="bench_store-") as name:
        tmp = Path(name)
        if "steps" in wanted:
            results["steps"] = anyio.run(bench_steps, tmp, args.quick)
        if "long" in wanted:
            results["long"] = anyio.run(bench_long, tmp, args.quick)
        if "history" in wanted:
            results["history"] = bench_history(tmp, args.quick)
        if "status" in wanted:
            results["status"] = bench_status(args.quick)
    results["environment"]["load_average_after"] = os.getloadavg()
    show(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"bench_store-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
