"""Bundled demo pipelines, so `stepstream serve` with no arguments has something worth watching.

`demo` runs five sync steps and `demo_async` the same five as async steps. Each
step counts `items_per_step` items over `seconds_per_step` seconds;
`fail_at_step` makes that step (0-based) raise halfway, to try failures.
"""

from __future__ import annotations

import time

import anyio
import msgspec
from stepstream import Pipeline, Progress

STEP_NAMES = ("extract", "validate", "processing", "enrich", "publish")


class DemoFailure(RuntimeError):
    """Raised on request by `fail_at_step`."""


class Plan(msgspec.Struct, frozen=True):
    """The demo's inputs, handed from step to step."""

    seconds_per_step: float
    items_per_step: int
    fail_at_step: int | None


def _plan(seconds_per_step: float, items_per_step: int, fail_at_step: int | None) -> Plan:
    """Check what the types cannot say; a bad value fails the first step with a clear error."""
    if seconds_per_step < 0:
        raise ValueError(f"seconds_per_step must be >= 0, got {seconds_per_step}")
    if items_per_step < 1:
        raise ValueError(f"items_per_step must be >= 1, got {items_per_step}")
    return Plan(seconds_per_step, items_per_step, fail_at_step)


def _check(plan: Plan, index: int, item: int) -> None:
    if plan.fail_at_step == index and item == plan.items_per_step // 2:
        raise DemoFailure(
            f"step {index} ({STEP_NAMES[index]}) failed at item {item} because fail_at_step={index}"
        )


def _work(plan: Plan, index: int, progress: Progress) -> Plan:
    progress.message = f"{STEP_NAMES[index]}: {plan.items_per_step} items"
    pause = plan.seconds_per_step / plan.items_per_step
    for item in progress.iter(range(plan.items_per_step)):
        _check(plan, index, item)
        time.sleep(pause)
    return plan


async def _work_async(plan: Plan, index: int, progress: Progress) -> Plan:
    progress.total = plan.items_per_step
    progress.message = f"{STEP_NAMES[index]}: {plan.items_per_step} items"
    pause = plan.seconds_per_step / plan.items_per_step
    for item in range(plan.items_per_step):
        _check(plan, index, item)
        await anyio.sleep(pause)
        progress.advance()
    return plan


def _outputs(plan: Plan) -> dict[str, int]:
    return {"steps": len(STEP_NAMES), "items": len(STEP_NAMES) * plan.items_per_step}


demo = Pipeline("demo", description="Five sync steps counting items; try fail_at_step")


@demo.step
def extract(
    progress: Progress,
    seconds_per_step: float = 1.0,
    items_per_step: int = 20,
    fail_at_step: int | None = None,
) -> Plan:
    """Step 0."""
    return _work(_plan(seconds_per_step, items_per_step, fail_at_step), 0, progress)


@demo.step
def validate(plan: Plan, progress: Progress) -> Plan:
    """Step 1."""
    return _work(plan, 1, progress)


@demo.step(name="processing")
def process(plan: Plan, progress: Progress) -> Plan:
    """Step 2, named as in the progress query API's examples."""
    return _work(plan, 2, progress)


@demo.step
def enrich(plan: Plan, progress: Progress) -> Plan:
    """Step 3."""
    return _work(plan, 3, progress)


@demo.step
def publish(plan: Plan, progress: Progress) -> dict[str, int]:
    """Step 4; the outputs count what was done."""
    return _outputs(_work(plan, 4, progress))


demo_async = Pipeline("demo_async", description="The demo's five steps as async steps")


@demo_async.step(name="extract")
async def extract_async(
    progress: Progress,
    seconds_per_step: float = 1.0,
    items_per_step: int = 20,
    fail_at_step: int | None = None,
) -> Plan:
    """Step 0."""
    return await _work_async(_plan(seconds_per_step, items_per_step, fail_at_step), 0, progress)


@demo_async.step(name="validate")
async def validate_async(plan: Plan, progress: Progress) -> Plan:
    """Step 1."""
    return await _work_async(plan, 1, progress)


@demo_async.step(name="processing")
async def process_async(plan: Plan, progress: Progress) -> Plan:
    """Step 2."""
    return await _work_async(plan, 2, progress)


@demo_async.step(name="enrich")
async def enrich_async(plan: Plan, progress: Progress) -> Plan:
    """Step 3."""
    return await _work_async(plan, 3, progress)


@demo_async.step(name="publish")
async def publish_async(plan: Plan, progress: Progress) -> dict[str, int]:
    """Step 4; the outputs count what was done."""
    return _outputs(await _work_async(plan, 4, progress))


DEMO_PIPELINES: tuple[Pipeline, ...] = (demo, demo_async)
