"""`Pipeline.run` shares one engine and loop between calls and threads, and keeps no records."""

from __future__ import annotations

import threading
from contextvars import ContextVar

import anyio

from stepstream import Pipeline
from stepstream.runtime import oneshot

REGION: ContextVar[str] = ContextVar("region", default="none")


def _pipeline() -> Pipeline:
    p = Pipeline("oneshot")

    @p.step
    def start(n: int) -> int:
        return n + 1

    @p.step
    async def twice(n: int) -> int:
        await anyio.sleep(0)
        return 2 * n

    @p.step
    def where(n: int) -> tuple[int, str]:
        return n, REGION.get()

    return p


def test_calls_share_one_engine_and_forget_their_records() -> None:
    p = _pipeline()
    assert p.run(n=1) == (4, "none")
    engine = oneshot._shared_host().engine
    assert p.run(n=2) == (6, "none")
    assert oneshot._shared_host().engine is engine
    assert engine.list() == []
    assert engine.running == 0  # nor holds on to their jobs


def test_calls_from_several_threads_each_get_their_own_outputs() -> None:
    p = _pipeline()
    results: dict[int, tuple[int, str]] = {}

    def call(n: int) -> None:
        results[n] = p.run(n=n)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: (2 * (n + 1), "none") for n in range(8)}


def test_steps_see_the_callers_context_variables() -> None:
    token = REGION.set("north")
    try:
        assert _pipeline().run(n=0) == (2, "north")
    finally:
        REGION.reset(token)


def test_a_sync_step_may_call_pipeline_run() -> None:
    inner = _pipeline()
    outer = Pipeline("outer")

    @outer.step
    def nested(n: int) -> tuple[int, str]:
        return inner.run(n=n)

    assert outer.run(n=3) == (8, "none")


def test_more_callers_than_anyios_default_thread_limit_run_their_sync_steps_at_once() -> None:
    callers = 48  # anyio lets 40 threads run sync code at once by default
    everyone_in = threading.Barrier(callers)
    p = Pipeline("meet")

    @p.step
    def meet(n: int) -> int:
        everyone_in.wait(timeout=30)  # only there so a regression fails instead of hanging
        return n

    results: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            results[n] = p.run(n=n)
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: n for n in range(callers)}
