"""A pipeline whose second step raises, for the CLI's failure path."""

from __future__ import annotations

from stepstream import Pipeline

failing = Pipeline("failing", description="prepares, then raises in `explode`")


@failing.step
def prepare(n: int = 3) -> int:
    """Say what it prepares (a captured line), then pass the input on."""
    print(f"preparing {n}")
    return n


@failing.step
def explode(n: int) -> int:
    """Fail with a message naming the value."""
    raise ValueError(f"bad value {n}")
