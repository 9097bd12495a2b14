"""`Pipeline.run`: one execution on a private engine, its outputs or its step's exception."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..errors import StepFailedError
from .engine import Engine

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> Any:
    """Run `pipeline` to its end in a new event loop; raise StepFailedError if a step failed."""

    async def main() -> Any:
        engine = Engine(load_entrypoints=False, capture_logs=False)  # prints reach the terminal
        job = engine.create(pipeline, inputs)
        await engine.execute(job)
        if job.failure is not None:
            error = job.failure.error
            raise StepFailedError(
                f"step {error.step!r} of pipeline {pipeline.name!r} failed: "
                f"{error.type}: {error.message}"
            ) from job.failure.original
        return job.outputs

    return anyio.run(main)
