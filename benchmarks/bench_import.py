"""What starting stepstream costs a fresh process, against libraries of its kind.

Run:  uv run python benchmarks/bench_import.py            (about 30 s)
      uv run python benchmarks/bench_import.py --quick

Each command runs in a new interpreter (the environment's own python, no `uv run`
in between), rounds alternating the commands; per run, the child's CPU time
(user + system, from rusage) and its wall time. Peers: an empty interpreter
(`python -c pass`), `import tqdm` and `import click`. With `--compare PYTHON`,
the stepstream commands also run under another environment's interpreter (say
an older checkout's `.venv/bin/python`), in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

from bench_server import checkout_of
from rich.console import Console
from rich.table import Table

PYTHON = sys.executable


def commands(python: str, label: str = "") -> dict[str, list[str]]:
    """The stepstream commands, run by `python` and its environment's console script."""
    stepstream = str(Path(python).parent / "stepstream")
    return {
        f"import stepstream{label}": [python, "-c", "import stepstream"],
        f"from stepstream import Pipeline, Progress{label}": [
            python,
            "-c",
            "from stepstream import Pipeline, Progress",
        ],
        f"from stepstream import Engine{label}": [python, "-c", "from stepstream import Engine"],
        f"stepstream --help{label}": [stepstream, "--help"],
    }


PEERS: dict[str, list[str]] = {
    "python -c pass (floor)": [PYTHON, "-c", "pass"],
    "import tqdm (peer)": [PYTHON, "-c", "import tqdm"],
    "import click (peer)": [PYTHON, "-c", "import click"],
}
GOALS_MS = {"import stepstream": 60.0, "stepstream --help": 200.0}
RESULTS_DIR = Path(__file__).parent / "results"


def one_run(argv: list[str]) -> tuple[float, float]:
    """CPU and wall milliseconds of one child process, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1e3, wall * 1e3


def summary(values: list[float]) -> dict[str, Any]:
    """Median and half the interquartile range."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "half_iqr": (q3 - q1) / 2, "samples": values}


def bench(runs: dict[str, list[str]], rounds: int) -> dict[str, dict[str, Any]]:
    """Every command once per round, the order turned round every other round."""
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for argv in runs.values():  # warm the file cache and the bytecode
        one_run(argv)
    for round_no in range(rounds):
        for name in names if round_no % 2 == 0 else reversed(names):
            c, w = one_run(runs[name])
            cpu[name].append(c)
            wall[name].append(w)
    return {name: {"cpu_ms": summary(cpu[name]), "wall_ms": summary(wall[name])} for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--compare", metavar="PYTHON", help="another environment's interpreter")
    args = parser.parse_args()
    runs = {**PEERS, **commands(PYTHON)}
    other = ""
    if args.compare:
        other = f" ({checkout_of(args.compare)})"
        runs.update(commands(args.compare, other))
    load_before = os.getloadavg()[0]
    rows = bench(runs, 5 if args.quick else 15)
    load_after = os.getloadavg()[0]
    floor = rows["python -c pass (floor)"]["cpu_ms"]["median"]
    table = Table(
        title=f"Fresh processes, {len(rows['import stepstream']['cpu_ms']['samples'])} "
        f"alternating rounds; load {load_before:.2f} before, {load_after:.2f} after"
    )
    for col in ("command", "CPU ms (median ± half IQR)", "above the floor", "wall ms", "goal"):
        table.add_column(col)
    for name, row in rows.items():
        cpu, wall = row["cpu_ms"], row["wall_ms"]
        goal = None if other and name.endswith(other) else GOALS_MS.get(name)
        verdict = ""
        if goal is not None:
            verdict = f"≤ {goal:.0f} ms " + ("✓" if cpu["median"] <= goal else "✗")
        table.add_row(
            name,
            f"{cpu['median']:.1f} ± {cpu['half_iqr']:.1f}",
            f"{cpu['median'] - floor:.1f}",
            f"{wall['median']:.1f} ± {wall['half_iqr']:.1f}",
            verdict,
        )
    Console(width=150).print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"bench_import-{stamp}.json"
    result = {"load_before": load_before, "load_after": load_after, "compare": args.compare}
    result["rows"] = rows
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
