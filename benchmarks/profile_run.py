"""Where the fixed cost of one `await engine.run(...)` goes, component by component.

Run:  uv run python benchmarks/profile_run.py           (about 30 s)

Two ways, in one run. Ablation: the same 1-step sync execution on engines that
each lack one component (replaced by a no-op in this process only), rounds
alternating the variants; a component's cost is the full run's median minus
the variant's. Alone: the parts an execution calls once, each timed by itself.
All figures are CPU time of the process (every thread), medians of the rounds
with half the interquartile range, and the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from time import process_time
from typing import Any

import anyio
import anyio.to_thread
from rich.console import Console
from rich.table import Table

from stepstream import Engine, Pipeline
from stepstream.authoring.progress import Throttle
from stepstream.model.ids import new_execution_id
from stepstream.runtime import threads
from stepstream.runtime.runner import Runner

CALLS = 400  # executions per sample
RESULTS_DIR = Path(__file__).parent / "results"


def chain(n: int) -> Pipeline:
    """n trivial sync steps."""
    pipeline = Pipeline(f"chain{n}")
    for i in range(n):
        namespace: dict[str, Any] = {}
        exec(f"def s{i}(x):\n    return x + 1\n", namespace)
        pipeline.step(name=f"s{i}")(namespace[f"s{i}"])
    return pipeline


@contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name` is `value` inside the block (this benchmark's process only)."""
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


async def _inline(self: Runner, job: Any, work: Callable[..., Any], *args: Any) -> Any:
    return work(*args)


async def _announce_now(self: Runner, job: Any, record: Any, status: Any, error: Any) -> None:
    self.announce_now(job, record, status, error)


def _no_timer(self: Throttle) -> Callable[[], None]:
    return lambda: None


VARIANTS: dict[str, tuple[str, Callable[[], Any]]] = {
    "thread hop of the sync batch (threads.run_sync + shielded scope)": (
        "hop",
        lambda: replaced(Runner, "in_thread", _inline),
    ),
    "waiting for the store to keep the ending (a future, a loop wake-up)": (
        "kept",
        lambda: replaced(Runner, "announce", _announce_now),
    ),
    "Throttle.keep_fresh timer (call_later, cancel)": (
        "timer",
        lambda: replaced(Throttle, "keep_fresh", _no_timer),
    ),
}


async def sample(run: Callable[[], Awaitable[Any]]) -> float:
    """CPU µs per call over CALLS calls."""
    began = process_time()
    for _ in range(CALLS):
        await run()
    return (process_time() - began) / CALLS * 1e6


async def ablation(rounds: int) -> dict[str, list[float]]:
    """The full run and each variant, one sample each per round."""
    one = chain(1)
    full = Engine(load_entrypoints=False)
    no_capture = Engine(load_entrypoints=False, capture_logs=False)
    samples: dict[str, list[float]] = {"full": [], "capture": []}
    samples.update({key: [] for key, _ in VARIANTS.values()})
    for round_no in range(rounds + 1):  # the first round warms up
        results = {"full": await sample(lambda: full.run(one, {"x": 0}))}
        results["capture"] = await sample(lambda: no_capture.run(one, {"x": 0}))
        for key, patch in VARIANTS.values():
            with patch():
                results[key] = await sample(lambda: full.run(one, {"x": 0}))
        if round_no:
            for key, value in results.items():
                samples[key].append(value)
    return samples


async def alone(rounds: int) -> dict[str, list[float]]:
    """Parts of one execution, each timed by itself."""
    one = chain(1)
    engine = Engine(load_entrypoints=False)
    kept = (await engine.run(one, {"x": 0})).execution_id

    async def create() -> None:
        job = engine.create(one, {"x": 0})
        engine.cancel(job.execution_id)  # ends it, so the recorder lets it go

    async def get() -> None:
        engine.get(kept)

    async def ids() -> None:
        new_execution_id()

    async def hop() -> None:
        await threads.run_sync(int)

    async def anyio_hop() -> None:
        await anyio.to_thread.run_sync(int)

    parts = {"create": create, "get": get, "id": ids, "bare hop": hop, "anyio hop": anyio_hop}
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for round_no in range(rounds + 1):
        for name, part in parts.items():
            value = await sample(part)
            if round_no:
                samples[name].append(value)
    return samples


def half_iqr(values: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    ablated = anyio.run(ablation, args.rounds)
    parts = anyio.run(alone, args.rounds)
    median = {name: statistics.median(v) for name, v in {**ablated, **parts}.items()}
    full = median["full"]
    table = Table(
        title=f"One 1-step sync `engine.run`, CPU µs ({args.rounds} rounds of {CALLS}; "
        f"load {load:.2f} → {os.getloadavg()[0]:.2f})"
    )
    table.add_column("component")
    table.add_column("µs (± half IQR of the variant)", justify="right")
    table.add_row("whole execution", f"{full:.1f} ± {half_iqr(ablated['full']):.1f}")
    accounted = 0.0
    rows = [("capture of prints and logs (capture_logs=True)", "capture")]
    rows += [(label, key) for label, (key, _) in VARIANTS.items()]
    for label, key in rows:
        cost = full - median[key]
        accounted += cost
        table.add_row(f"  {label}", f"{cost:.1f} ± {half_iqr(ablated[key]):.1f}")
    create, get = median["create"] - median["id"], median["get"]
    table.add_row("  creating the record (validation, record, event, Job)", f"{create:.1f}")
    table.add_row("  the execution id (ULID)", f"{median['id']:.1f}")
    table.add_row("  reading the finished record back (engine.get)", f"{get:.1f}")
    rest = full - accounted - median["create"] - get
    table.add_row("  the rest: started/step/finished events, hooks, cancel scope", f"{rest:.1f}")
    table.add_row("bare threads.run_sync(int), for reference", f"{median['bare hop']:.1f}")
    table.add_row("bare anyio.to_thread.run_sync(int), for reference", f"{median['anyio hop']:.1f}")
    Console(width=140).print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"profile_run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"load": load, "ablation": ablated, "alone": parts}, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
