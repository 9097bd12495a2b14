"""`GET /api/v1/executions/{id}/logs`: what an execution's steps printed and logged."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from stepstream import Engine, LogLine, UnknownExecution

from ..dependencies import OffLoop
from ..problems import ProblemError, problem_spec


class LogPage(msgspec.Struct):
    """Captured lines numbered above `after`; pass `next_after` as `after` for later ones."""

    execution_id: str
    lines: list[LogLine]
    next_after: int


@get(
    "/executions/{execution_id:str}/logs",
    summary="Read an execution's captured logs",
    tags=["executions"],
    responses={404: problem_spec("No execution has this id")},
)
async def get_logs(
    engine: NamedDependency[Engine],
    off_loop: NamedDependency[OffLoop],
    execution_id: FromPath[str],
    after: Annotated[
        int, Parameter(ge=0, le=2**63 - 1, description="Return lines numbered above this")
    ] = 0,
) -> LogPage:
    """The kept lines (the last ones of each execution), in order, with their step and stream."""
    try:
        lines = await off_loop(engine.logs, execution_id, after)
    except UnknownExecution as exc:
        raise ProblemError(
            404,
            str(exc),
            type_="unknown-execution",
            title="Unknown execution",
            execution_id=execution_id,
        ) from None
    return LogPage(
        execution_id=execution_id, lines=lines, next_after=lines[-1].n if lines else after
    )
