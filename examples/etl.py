"""A sync ETL pipeline with item-level progress over a generated data set.

uv run stepstream run examples/etl.py:etl -i rows=200000
"""

from __future__ import annotations

import random

from stepstream import Pipeline, Progress

etl = Pipeline("etl", description="Generate rows, clean them, aggregate per region")

REGIONS = ("north", "south", "east", "west")


@etl.step
def extract(rows: int = 100_000, seed: int = 7) -> list[dict]:
    """Generate a reproducible data set standing in for a source table."""
    rng = random.Random(seed)
    return [
        {"id": i, "region": rng.choice(REGIONS), "amount": round(rng.uniform(-10, 500), 2)}
        for i in range(rows)
    ]


@etl.step(name="processing", weight=3)
def transform(rows: list[dict], progress: Progress) -> list[dict]:
    """Drop refunds and add tax, reporting every row."""
    progress.message = "cleaning rows"
    cleaned = []
    for row in progress.iter(rows):
        if row["amount"] > 0:
            cleaned.append({**row, "amount_with_tax": round(row["amount"] * 1.2, 2)})
    return cleaned


@etl.step
def load(rows: list[dict], progress: Progress) -> dict:
    """Aggregate per region; the outputs of the execution."""
    totals: dict[str, float] = {}
    for row in progress.iter(rows):
        totals[row["region"]] = round(totals.get(row["region"], 0.0) + row["amount_with_tax"], 2)
    return {"written": len(rows), "totals": totals}
