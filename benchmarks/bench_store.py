"""Benchmarks of the SQLite store, against the memory store or a floor measured in the same run.

Run:  uv run python benchmarks/bench_store.py             (under a minute)
      uv run python benchmarks/bench_store.py --quick     (smoke run: 1,000 executions)
Options: --only steps|history (repeatable), --profile (always profile section 1),
--out PATH (JSON file).

1. steps: per-step overhead of a 1,000-step sync pipeline with `Engine(store="sqlite:///…")`
   against `Engine(store="memory://")`, `await engine.run(...)`, interleaved rounds, minus
   a plain loop; with the producing (worker) thread's CPU time per step, and a cProfile of
   the worker thread and the writer thread's commit costs when the ratio misses its target
   (or with --profile).
2. history: 10,000 executions of a small pipeline recorded in SQLite; list-page and
   single-record latency through `store.list`/`store.get` and through a real
   `stepstream serve` (GET /api/v1/executions?limit=50, GET /api/v1/executions/{id}),
   and the database size per execution.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import sqlite3
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter, process_time, thread_time
from typing import Any

import anyio
import msgspec
from bench_server import Child, environment, fmt, percentile, stepstream_serve, summary

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import encode
from stepstream.stores.sqlite import SqliteStore

STEPS = 1_000
EXECUTIONS = 10_000
TARGET_RATIO = 1.5
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- 1. per-step overhead ---------------------------------------------------------------------


class Marks:
    """Clock readings taken inside the first and last step, on the worker thread that runs them."""

    def __init__(self) -> None:
        self.first: tuple[float, float] = (0.0, 0.0)
        self.last: tuple[float, float] = (0.0, 0.0)
        self.profiler: cProfile.Profile | None = None

    def begin(self) -> None:
        if self.profiler is not None:
            self.profiler.enable()  # profiles this (the worker) thread only
        self.first = (perf_counter(), thread_time())

    def end(self) -> None:
        self.last = (perf_counter(), thread_time())
        if self.profiler is not None:
            self.profiler.disable()


def make_chain(marks: Marks) -> tuple[Pipeline, list[Any]]:
    """1,000 distinct `def s(x): return x + 1` steps; the first and last also read the clocks."""
    namespace: dict[str, Any] = {"marks": marks}
    for i in range(STEPS):
        mark = "marks.begin()\n    " if i == 0 else "marks.end()\n    " if i == STEPS - 1 else ""
        exec(f"def s{i}(x):\n    {mark}return x + 1\n", namespace)
    functions = [namespace[f"s{i}"] for i in range(STEPS)]
    chain = Pipeline("chain", description=f"{STEPS} trivial sync steps")
    for i, fn in enumerate(functions):
        chain.step(name=f"s{i}")(fn)
    plain = []
    for i in range(STEPS):
        exec(f"def p{i}(x):\n    return x + 1\n", namespace)
        plain.append(namespace[f"p{i}"])
    return chain, plain


async def bench_steps(tmp: Path, quick: bool, profile: bool) -> dict[str, Any]:
    """Interleaved rounds: plain loop, memory store, SQLite store (flushed between rounds)."""
    warmup, repeats = (2, 7) if quick else (3, 41)
    marks = Marks()
    chain, plain_functions = make_chain(marks)
    db = tmp / "steps.db"
    engines = {
        "memory": Engine(store="memory://", load_entrypoints=False),
        "sqlite": Engine(store=f"sqlite:///{db}", load_entrypoints=False),
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "inner_wall": [], "inner_thread_cpu": [], "flush": []}
        for name in ("plain", *engines)
    }
    for round_no in range(warmup + repeats):
        gc.collect()
        began = perf_counter()
        x = 0
        for fn in plain_functions:
            x = fn(x)
        if round_no >= warmup:
            samples["plain"]["wall"].append(perf_counter() - began)
        names = list(engines)
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            cpu_began = process_time()
            record = await engines[name].run(chain, {"x": 0})
            cpu = process_time() - cpu_began
            flush_began = perf_counter()
            engines[name].store.flush()
            flushed = perf_counter() - flush_began
            assert record.status == "completed" and record.outputs == STEPS
            if round_no < warmup:
                continue
            s = samples[name]
            s["wall"].append((record.finished_at - record.started_at).total_seconds())
            s["cpu"].append(cpu)
            s["inner_wall"].append(marks.last[0] - marks.first[0])
            s["inner_thread_cpu"].append(marks.last[1] - marks.first[1])
            s["flush"].append(flushed)
    plain = statistics.median(samples["plain"]["wall"])
    rows: dict[str, Any] = {}
    for name in engines:
        s = samples[name]
        rows[name] = {
            "per_step_us": summary([(w - plain) / STEPS * 1e6 for w in s["wall"]]),
            "process_cpu_per_step_us": summary([c / STEPS * 1e6 for c in s["cpu"]]),
            "inner_per_step_us": summary([(w / (STEPS - 1)) * 1e6 for w in s["inner_wall"]]),
            "worker_cpu_per_step_us": summary(
                [(c / (STEPS - 1)) * 1e6 for c in s["inner_thread_cpu"]]
            ),
            "flush_ms": summary([f * 1e3 for f in s["flush"]]),
        }
    ratio = rows["sqlite"]["per_step_us"]["median"] / rows["memory"]["per_step_us"]["median"]
    result: dict[str, Any] = {
        "settings": {"steps": STEPS, "warmup": warmup, "repeats": repeats},
        "plain_loop_us": plain * 1e6,
        "rows": rows,
        "ratio": ratio,
        "cpu_ratio": rows["sqlite"]["worker_cpu_per_step_us"]["median"]
        / rows["memory"]["worker_cpu_per_step_us"]["median"],
    }
    executions = warmup + repeats
    for engine in engines.values():
        engine.store.close()
    result["db_bytes_per_execution"] = _db_bytes(db) / executions
    if profile or ratio > TARGET_RATIO:
        result["profiles"] = await _profiles(tmp, chain, marks, 3 if quick else 20)
    return result


def _db_bytes(db: Path) -> int:
    """The file and any write-ahead log left beside it."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


async def _profiles(tmp: Path, chain: Pipeline, marks: Marks, runs: int) -> dict[str, Any]:
    """cProfile of the worker thread between the first and last step, per store."""
    found: dict[str, Any] = {}
    for name, url in (("memory", "memory://"), ("sqlite", f"sqlite:///{tmp / 'profile.db'}")):
        engine = Engine(store=url, load_entrypoints=False)
        await engine.run(chain, {"x": 0})
        commits = _time_commits(engine.store)
        marks.profiler = cProfile.Profile()
        for _ in range(runs):
            record = await engine.run(chain, {"x": 0})
            engine.store.flush()
        profiler, marks.profiler = marks.profiler, None
        engine.store.close()
        stats = pstats.Stats(profiler)
        total = stats.total_tt  # type: ignore[attr-defined]
        calls = (runs * (STEPS - 1)) or 1
        entries = sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda kv: kv[1][2],
            reverse=True,
        )
        top = [
            {
                "function": f"{Path(file).name}:{line}({func})",
                "calls_per_step": nc / calls,
                "tottime_us_per_step": tt / calls * 1e6,
                "cumtime_us_per_step": ct / calls * 1e6,
            }
            for (file, line, func), (_, nc, tt, ct, _) in entries[:14]
        ]
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
        found[name] = {
            "profiled_us_per_step": total / calls * 1e6,
            "top": top,
            "text": text.getvalue(),
        }
        if commits is not None:
            began = perf_counter()
            for _ in range(20):
                encoded = encode(record)
            found[name]["writer"] = {
                "commits_per_execution": len(commits) / runs,
                "events_per_commit": statistics.median(c[2] for c in commits),
                "cpu_ms_per_execution": sum(c[1] for c in commits) / runs * 1e3,
                "wall_ms_per_execution": sum(c[0] for c in commits) / runs * 1e3,
                "record_bytes": len(encoded),
                "encode_record_us": (perf_counter() - began) / 20 * 1e6,
            }
    return found


def _time_commits(store: Any) -> list[tuple[float, float, int]] | None:
    """Time the SQLite writer thread's commits (wall, its CPU, events) by wrapping this instance's
    `_write`; None for a store without a writer thread."""
    if not isinstance(store, SqliteStore):
        return None
    commits: list[tuple[float, float, int]] = []
    write = store._write

    def timed(batch: dict[str, Any]) -> str | None:
        began, cpu_began = perf_counter(), thread_time()
        failure = write(batch)
        events = sum(len(tail.events) for tail in batch.values())
        commits.append((perf_counter() - began, thread_time() - cpu_began, events))
        return failure

    store._write = timed  # type: ignore[method-assign]
    return commits


# -- 2. 10,000 recorded executions ------------------------------------------------------------


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


# -- reporting --------------------------------------------------------------------------------


def show(results: dict[str, Any]) -> None:
    """Print one table per section, and the profiles if any were taken."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    if "steps" in results:
        r = results["steps"]
        s = r["settings"]
        table = Table(
            title=f"2a. {STEPS}-step sync pipeline, engine.run per store ({s['repeats']} "
            f"interleaved rounds after {s['warmup']}; plain loop {r['plain_loop_us']:.0f} µs "
            "subtracted)"
        )
        for col in (
            "store",
            "µs/step (wall)",
            "ratio",
            "target",
            "worker-thread CPU µs/step",
            "process CPU µs/step",
            "µs/step inside steps",
            "flush after run ms",
        ):
            table.add_column(col, justify="left" if col == "store" else "right")
        memory = r["rows"]["memory"]
        for name, row in r["rows"].items():
            cpu_ratio = (
                row["worker_cpu_per_step_us"]["median"] / memory["worker_cpu_per_step_us"]["median"]
            )
            table.add_row(
                name,
                fmt(row["per_step_us"], digits=1),
                f"{row['per_step_us']['median'] / memory['per_step_us']['median']:.2f}",
                f"≤ {TARGET_RATIO}" if name == "sqlite" else "",
                f"{fmt(row['worker_cpu_per_step_us'], digits=1)} ({cpu_ratio:.2f}x)",
                fmt(row["process_cpu_per_step_us"], digits=1),
                fmt(row["inner_per_step_us"], digits=1),
                fmt(row["flush_ms"], digits=2),
            )
        console.print(table)
        console.print(
            f"SQLite file per {STEPS}-step execution: {r['db_bytes_per_execution'] / 1024:.1f} KiB"
        )
        for name, prof in r.get("profiles", {}).items():
            console.print(
                f"\n[bold]cProfile of the worker thread, {name} store[/] "
                f"({prof['profiled_us_per_step']:.1f} µs/step under the profiler)"
            )
            ptable = Table()
            for col in ("function", "calls/step", "tottime µs/step", "cumtime µs/step"):
                ptable.add_column(col, justify="left" if col == "function" else "right")
            for e in prof["top"]:
                ptable.add_row(
                    e["function"],
                    f"{e['calls_per_step']:.2f}",
                    f"{e['tottime_us_per_step']:.2f}",
                    f"{e['cumtime_us_per_step']:.2f}",
                )
            console.print(ptable)
            writer = prof.get("writer")
            if writer:
                console.print(
                    f"writer thread: {writer['commits_per_execution']:.1f} commits per execution "
                    f"({writer['events_per_commit']:.0f} events each), "
                    f"{writer['cpu_ms_per_execution']:.2f} ms CPU and "
                    f"{writer['wall_ms_per_execution']:.2f} ms wall per execution; each commit "
                    f"re-encodes the record ({writer['record_bytes'] / 1024:.0f} KiB, "
                    f"{writer['encode_record_us']:.0f} µs)"
                )
    if "history" in results:
        r = results["history"]
        w = r["written"]
        table = Table(
            title=f"2b. {w['executions']:,} recorded executions of a 3-step pipeline in SQLite "
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
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 1,000 executions")
    parser.add_argument("--only", action="append", choices=["steps", "history"])
    parser.add_argument("--profile", action="store_true", help="profile section 1 in any case")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    results: dict[str, Any] = {"environment": environment()}
    with tempfile.TemporaryDirectory(prefix="bench_store-") as name:
        tmp = Path(name)
        if not args.only or "steps" in args.only:
            results["steps"] = anyio.run(bench_steps, tmp, args.quick, args.profile)
        if not args.only or "history" in args.only:
            results["history"] = bench_history(tmp, args.quick)
    results["environment"]["load_average_after"] = os.getloadavg()
    show(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"bench_store-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
