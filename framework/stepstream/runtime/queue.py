"""The queue of executions: first in, first out, at most `max_concurrent` running at once."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from .jobs import Job


class ExecutionQueue:
    """Starts queued jobs in order as slots free up; a job cancelled while waiting is skipped."""

    def __init__(
        self,
        max_concurrent: int | None,
        prepare: Callable[[Job], Awaitable[None]],
        execute: Callable[[Job], Awaitable[object]],
    ) -> None:
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self._prepare = prepare
        self._execute = execute
        self._waiting: deque[Job] = deque()
        self._queued = anyio.Event()
        self._limiter = anyio.CapacityLimiter(max_concurrent or math.inf)

    def put(self, job: Job) -> None:
        """Queue a job behind the others."""
        self._waiting.append(job)
        self._queued.set()

    async def serve(self, task_group: TaskGroup) -> None:
        """Start jobs in `task_group` as slots free up; runs until cancelled."""
        while True:
            while not self._waiting:
                self._queued = anyio.Event()
                await self._queued.wait()
            job = self._waiting.popleft()
            if job.ended:
                continue
            await self._limiter.acquire_on_behalf_of(job)
            await self._prepare(job)  # here, not in the task, so starts stay in order
            if job.ended:
                self._limiter.release_on_behalf_of(job)
                continue
            task_group.start_soon(self._run, job)

    async def _run(self, job: Job) -> None:
        try:
            if not job.ended:  # not cancelled while waiting for its task
                await self._execute(job)
        finally:
            self._limiter.release_on_behalf_of(job)
