"""The demo pipelines, so `stepstream serve` with no arguments has something worth watching.

`demo` runs `steps` sync steps (five by default) and `demo_async` the same as
async steps. Each step counts `items_per_step` items over `seconds_per_step`
seconds; `fail_at_step` makes that step (0-based) raise halfway, to try failures.
The number of steps is an input, so each demo builds (and keeps) one pipeline per
step count through `Pipeline.for_inputs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import anyio
import msgspec

from stepstream import Pipeline, Progress

log = logging.getLogger(__name__)
DEFAULT_STEPS = 5
MAX_STEPS = 20
MAX_SECONDS_PER_STEP = 3600.0
MAX_ITEMS_PER_STEP = 100_000
NAP = 0.1  # the longest a sync step sleeps between two checks for a cancel
MIDDLE_NAMES = ("validate", "processing", "enrich")  # step 2 named as in the API's examples


Steps = Annotated[int, msgspec.Meta(ge=1, le=MAX_STEPS)]
SecondsPerStep = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS_PER_STEP)]
ItemsPerStep = Annotated[int, msgspec.Meta(ge=1, le=MAX_ITEMS_PER_STEP)]
FailAtStep = Annotated[int, msgspec.Meta(ge=0, lt=MAX_STEPS)]


class DemoFailure(RuntimeError):
    """Raised on request by `fail_at_step`."""


class Plan(msgspec.Struct, frozen=True):
    """The demo's inputs, handed from step to step."""

    steps: int
    seconds_per_step: float
    items_per_step: int
    fail_at_step: int | None


def step_names(count: int) -> list[str]:
    """`extract`, the middle names (then `stage_N`), `publish`: as many as asked."""
    if count == 1:
        return ["publish"]
    middle = [*MIDDLE_NAMES, *(f"stage_{i}" for i in range(len(MIDDLE_NAMES) + 1, count - 1))]
    return ["extract", *middle[: count - 2], "publish"]


def _check(plan: Plan, index: int, item: int) -> None:
    if plan.fail_at_step == index and item == plan.items_per_step // 2:
        raise DemoFailure(f"step {index} failed at item {item} because fail_at_step={index}")


def _nap(seconds: float, progress: Progress) -> None:
    """Sleep in short naps, checking for a cancel between two, so a long pause can stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(NAP, left))
        progress.check()


def _work(plan: Plan, index: int, progress: Progress) -> Plan:
    progress.message = f"{plan.items_per_step} items"
    pause = plan.seconds_per_step / plan.items_per_step
    for item in progress.iter(range(plan.items_per_step)):
        _check(plan, index, item)
        _nap(pause, progress)
    return plan


async def _work_async(plan: Plan, index: int, progress: Progress) -> Plan:
    progress.total = plan.items_per_step
    progress.message = f"{plan.items_per_step} items"
    pause = plan.seconds_per_step / plan.items_per_step
    for item in range(plan.items_per_step):
        _check(plan, index, item)
        await anyio.sleep(pause)
        progress.advance()
    return plan


def _counted(plan: Plan, index: int) -> None:
    """One log line per step, so the dashboard and `stepstream logs` have lines to show."""
    log.info("step %d of %d counted %d items", index + 1, plan.steps, plan.items_per_step)


def _outputs(plan: Plan) -> dict[str, int]:
    return {"steps": plan.steps, "items": plan.steps * plan.items_per_step}


def _declare(pipeline: Pipeline, count: int, is_async: bool) -> None:
    """Declare `count` steps: the first takes the inputs, the last returns the outputs."""
    names = step_names(count)

    def body(index: int) -> Callable[[Plan, Progress], Any]:
        last = index == count - 1
        if is_async:

            async def step_async(plan: Plan, progress: Progress) -> Any:
                done = await _work_async(plan, index, progress)
                _counted(done, index)
                return _outputs(done) if last else done

            return step_async

        def step(plan: Plan, progress: Progress) -> Any:
            done = _work(plan, index, progress)
            _counted(done, index)
            return _outputs(done) if last else done

        return step

    first = body(0)

    async def first_async(
        progress: Progress,
        steps: Steps = DEFAULT_STEPS,
        seconds_per_step: SecondsPerStep = 1.0,
        items_per_step: ItemsPerStep = 20,
        fail_at_step: FailAtStep | None = None,
    ) -> Any:
        return await first(Plan(steps, seconds_per_step, items_per_step, fail_at_step), progress)

    def first_sync(
        progress: Progress,
        steps: Steps = DEFAULT_STEPS,
        seconds_per_step: SecondsPerStep = 1.0,
        items_per_step: ItemsPerStep = 20,
        fail_at_step: FailAtStep | None = None,
    ) -> Any:
        return first(Plan(steps, seconds_per_step, items_per_step, fail_at_step), progress)

    pipeline.step(first_async if is_async else first_sync, name=names[0])
    for index in range(1, count):
        pipeline.step(body(index), name=names[index])


class DemoPipeline(Pipeline):
    """A demo whose number of steps is one of its inputs."""

    def __init__(self, name: str, description: str, *, is_async: bool) -> None:
        super().__init__(name, description)
        self.is_async = is_async
        _declare(self, DEFAULT_STEPS, is_async)
        self._shapes: dict[int, Pipeline] = {DEFAULT_STEPS: self}

    def for_inputs(self, inputs: dict[str, Any]) -> Pipeline:
        """The demo with as many steps as `steps` asks for (built once per count)."""
        count = inputs["steps"]
        shape = self._shapes.get(count)
        if shape is None:
            shape = Pipeline(self.name, self.description)
            _declare(shape, count, self.is_async)
            self._shapes[count] = shape
        return shape


demo = DemoPipeline(
    "demo",
    "Sync steps counting items: choose steps, seconds_per_step, items_per_step",
    is_async=False,
)
demo_async = DemoPipeline("demo_async", "The demo as async steps", is_async=True)

DEMO_PIPELINES: tuple[Pipeline, ...] = (demo, demo_async)
