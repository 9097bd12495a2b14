"""Retries: each attempt is visible, waits follow the backoff, a cancel or a non-retried error
ends them at once, and the failed record keeps the last error and how often it was tried."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import anyio
import pytest

from stepstream import Engine, Pipeline, PipelineDefinitionError, Progress
from stepstream.authoring.policy import Attempts
from stepstream.model.events import ProgressEvent
from stepstream.runtime import attempts

from fw_support import HookRecorder, RecordingStore, engine_with

pytestmark = pytest.mark.anyio


class Retrying(HookRecorder):
    """Also records `step_retrying`."""

    from stepstream import hookimpl

    @hookimpl
    def step_retrying(
        self, execution_id: str, index: int, attempt: int, delay: float, error: Any
    ) -> None:
        self._note(
            "step_retrying",
            execution_id=execution_id,
            index=index,
            attempt=attempt,
            delay=delay,
            error=error,
        )


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock for the waits between attempts: records each, waits for none."""
    asked: list[float] = []

    def in_thread(stopped: threading.Event, seconds: float) -> bool:
        asked.append(seconds)
        return stopped.is_set()

    async def on_loop(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(attempts, "wait_in_thread", in_thread)
    monkeypatch.setattr(attempts, "wait_on_loop", on_loop)
    return asked


def _flaky(fails: int, *, is_async: bool, error: type[Exception] = OSError, **policy: Any):
    """A pipeline whose step `fetch` raises `error` on its first `fails` calls."""
    p = Pipeline(f"flaky-{is_async}")
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= fails:
            raise error(f"try {len(calls)}")
        return f"ok after {len(calls)}"

    if is_async:

        @p.step(**policy)
        async def fetch(x: int) -> str:
            return attempt()
    else:

        @p.step(**policy)
        def fetch(x: int) -> str:
            return attempt()

    @p.step
    def after(value: str) -> str:
        return value.upper()

    return p, calls


def test_waits_grow_by_the_backoff() -> None:
    policy = Attempts(retries=4, delay=1.0, backoff=2.0)
    assert [policy.wait_after(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert Attempts(retries=2, delay=0.5).wait_after(2) == 0.5


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_retried_step_shows_each_attempt_and_waits_by_the_backoff(
    is_async: bool, waits: list[float]
) -> None:
    store, hooks = RecordingStore(), Retrying()
    pipeline, calls = _flaky(
        2, is_async=is_async, retries=3, retry_delay=1.0, backoff=2.0, retry_on=(OSError,)
    )
    async with engine_with(hooks, store=store) as engine:
        record = await engine.run(pipeline, {"x": 1})
    assert record.status == "completed", record.error
    assert record.outputs == "OK AFTER 3"
    assert len(calls) == 3
    assert waits == [1.0, 2.0]
    assert record.steps[0].attempt == 3
    assert record.steps[0].status == "completed"
    assert record.steps[1].attempt is None  # a step never retried says nothing new
    retries = [
        e.step
        for e in store.all_events(record.execution_id)
        if isinstance(e, ProgressEvent) and e.step is not None and e.step.attempt
    ]
    assert [(s.attempt, s.status) for s in retries] == [
        (2, "running"),
        (3, "running"),
        (3, "completed"),
    ]
    messages = [
        e.progress.message
        for e in store.all_events(record.execution_id)
        if isinstance(e, ProgressEvent) and e.step is not None and e.step.status == "running"
    ]
    assert "attempt 1 of 4 failed (OSError: try 1); retrying in 1 s" in messages
    assert [(c["attempt"], c["delay"], c["error"].message) for c in hooks.of("step_retrying")] == [
        (2, 1.0, "try 1"),
        (3, 2.0, "try 2"),
    ]
    assert hooks.of("step_failed") == []


@pytest.mark.parametrize("is_async", [False, True])
async def test_the_failed_record_keeps_the_last_error_and_the_number_of_attempts(
    is_async: bool, waits: list[float]
) -> None:
    hooks = Retrying()
    pipeline, calls = _flaky(9, is_async=is_async, retries=2, retry_delay=0.5)
    async with engine_with(hooks) as engine:
        record = await engine.run(pipeline, {"x": 1})
    assert record.status == "failed"
    assert len(calls) == 3
    assert waits == [0.5, 0.5]
    error = record.error
    assert error is not None
    assert (error.step, error.type, error.message, error.attempts) == (
        "fetch",
        "OSError",
        "try 3",
        3,
    )
    assert "try 3" in (error.traceback or "")
    assert [c["error"].attempts for c in hooks.of("step_failed")] == [3]
    assert record.steps[0].status == "failed"
    assert record.steps[0].attempt == 3


@pytest.mark.parametrize("is_async", [False, True])
async def test_an_error_not_in_retry_on_fails_at_once(is_async: bool, waits: list[float]) -> None:
    pipeline, calls = _flaky(
        1, is_async=is_async, error=ValueError, retries=3, retry_on=(OSError, TimeoutError)
    )
    async with Engine(load_entrypoints=False) as engine:
        record = await engine.run(pipeline, {"x": 1})
    assert record.status == "failed"
    assert len(calls) == 1
    assert waits == []
    assert record.error is not None
    assert (record.error.type, record.error.attempts) == ("ValueError", 1)
    assert record.steps[0].attempt is None


async def test_item_progress_restarts_but_the_percentage_never_goes_back(
    waits: list[float],
) -> None:
    p = Pipeline("restarts")
    tries: list[int] = []

    @p.step(retries=1)
    def count(progress: Progress) -> int:
        tries.append(1)
        for i in progress.iter(range(10)):
            if len(tries) == 1 and i == 8:
                raise OSError("lost the connection")
        return len(tries)

    @p.step
    def last(value: int) -> int:
        return value

    store = RecordingStore()
    async with Engine(store=store, load_entrypoints=False, progress_interval=0) as engine:
        record = await engine.run(p, {})
    assert record.status == "completed"
    progress = [
        e.progress for e in store.all_events(record.execution_id) if isinstance(e, ProgressEvent)
    ]
    percentages = [s.percentage for s in progress]
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100.0
    done = [s.items_done for s in progress if s.current_step == 0 and s.items_done is not None]
    restarts = [i for i in range(1, len(done)) if done[i] < done[i - 1]]
    assert len(restarts) == 1 and done[-1] == 10  # the second attempt counted from the start
    held = progress.index(next(s for s in progress if s.message and "retrying" in s.message))
    assert progress[held].percentage == progress[held - 1].percentage > 0


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_cancel_during_a_backoff_wait_takes_effect_at_once(is_async: bool) -> None:
    pipeline, calls = _flaky(9, is_async=is_async, retries=3, retry_delay=60.0)
    async with Engine(load_entrypoints=False) as engine:
        execution_id = engine.submit(pipeline, {"x": 1}).execution_id
        with anyio.fail_after(10):
            while engine.get(execution_id).steps[0].attempt != 2:
                await anyio.sleep(0.01)
            engine.cancel(execution_id)
            record = await engine.wait(execution_id)  # not 60 s later
    assert record.status == "cancelled"
    assert len(calls) == 1
    assert record.steps[0].status == "cancelled"


async def test_a_cancelled_step_is_never_retried(waits: list[float]) -> None:
    p = Pipeline("cancel-once")
    started = threading.Event()
    tries: list[int] = []

    @p.step(retries=5, retry_on=(Exception,))
    def work(progress: Progress) -> None:
        tries.append(1)
        started.set()
        while True:
            progress.check()
            threading.Event().wait(0.005)

    async with Engine(load_entrypoints=False) as engine:
        execution_id = engine.submit(p).execution_id
        await anyio.to_thread.run_sync(started.wait, 10)
        engine.cancel(execution_id)
        with anyio.fail_after(10):
            record = await engine.wait(execution_id)
    assert record.status == "cancelled"
    assert tries == [1]
    assert waits == []


async def test_real_waits_between_attempts_last_at_least_the_delay() -> None:
    stamps: list[float] = []
    p = Pipeline("real-waits")

    @p.step(retries=2, retry_delay=0.05, backoff=2.0)
    def fetch(x: int) -> int:
        stamps.append(time.monotonic())
        if len(stamps) < 3:
            raise OSError("not yet")
        return x

    async with Engine(load_entrypoints=False) as engine:
        record = await engine.run(p, {"x": 5})
    assert record.status == "completed"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1


def _declare(**policy: Any) -> None:
    p = Pipeline("bad")

    @p.step(**policy)
    def fetch(x: int) -> int:
        return x


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"retries": -1}, "retries=-1; retries is a whole number >= 0"),
        ({"retries": 1.5}, "retries=1.5"),
        ({"retries": True}, "retries=True"),
        ({"retries": 1, "retry_delay": -1}, "retry_delay=-1; it is a number of seconds >= 0"),
        ({"retries": 1, "retry_delay": float("inf")}, "retry_delay=inf"),
        ({"retries": 1, "backoff": 0.5}, "backoff=0.5; it is a number >= 1"),
        ({"retries": 1, "retry_on": "OSError"}, "retry_on='OSError'; give an exception class"),
        ({"retries": 1, "retry_on": (OSError, 3)}, "retry_on=(<class 'OSError'>, 3)"),
        ({"retries": 1, "retry_on": KeyboardInterrupt}, "a cancel is never retried"),
        ({"retries": 1, "retry_on": ()}, "retry_on=()"),
        ({"timeout": 0}, "timeout=0; a timeout is a number of seconds > 0, or None"),
        ({"timeout": "30"}, "timeout='30'"),
    ],
)
def test_a_bad_policy_fails_at_declaration_naming_the_step(
    policy: dict[str, Any], says: str
) -> None:
    with pytest.raises(PipelineDefinitionError) as raised:
        _declare(**policy)
    message = str(raised.value)
    assert message.startswith("step 'fetch' (fetch (test_retries.py:")
    assert says in message


def test_a_bad_pipeline_timeout_fails_naming_the_pipeline() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"pipeline 'p' has timeout=-5; a timeout"):
        Pipeline("p", timeout=-5)


def test_a_step_without_retries_or_timeout_has_no_policy() -> None:
    p = Pipeline("plain")

    @p.step
    def a(x: int) -> int:
        return x

    @p.step(retries=0, retry_delay=3.0)
    def b(value: int) -> int:
        return value

    @p.step(retries=2, retry_on=OSError)
    def c(value: int) -> int:
        return value

    assert [s.attempts is None for s in p.steps] == [True, True, False]
    assert p.steps[2].attempts is not None
    assert p.steps[2].attempts.retry_on == (OSError,)
