"""Retention: what `--keep` accepts, and the background task that prunes a store with it."""

from __future__ import annotations

import logging
import threading

import anyio
import pytest

from stepstream import Engine, Pipeline, StoreError
from stepstream.stores.memory import MemoryStore
from stepstream_server.retention import Retention, prune_forever


@pytest.mark.parametrize(
    ("text", "count", "age"),
    [
        ("1000", 1000, None),
        ("7d", None, 7 * 86400.0),
        ("1000,30d", 1000, 30 * 86400.0),
        ("12h, 5", 5, 12 * 3600.0),
        ("15m", None, 900.0),
        ("90s", None, 90.0),
        ("0", 0, None),
    ],
)
def test_keep_takes_a_count_an_age_or_both(text: str, count: int | None, age: float | None) -> None:
    assert Retention.parse(text) == Retention(count=count, age_seconds=age)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "'' is neither a count"),
        ("7w", "'7w' is neither a count"),
        ("1.5h", "'1.5h' is neither a count"),
        ("-1", "'-1' is neither a count"),
        ("10,20", "at most one count and one age"),
        ("1d,2h", "at most one count and one age"),
    ],
)
def test_keep_refuses_anything_else_saying_what_it_takes(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        Retention.parse(text)
    assert "e.g." in str(caught.value)


def test_a_retention_says_what_it_keeps() -> None:
    assert str(Retention.parse("1000")) == "the newest 1000 finished executions"
    assert str(Retention.parse("36h")) == "finished executions up to 36h old"
    assert str(Retention.parse("1000,7d")) == (
        "the newest 1000 finished executions, none older than 7d"
    )


class ThreadNotingStore(MemoryStore):
    """A memory store that notes the thread of each prune and fails the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.prune_threads: list[int] = []

    def prune(self, keep_count: int | None = None, keep_age_seconds: float | None = None) -> int:
        self.prune_threads.append(threading.get_ident())
        if len(self.prune_threads) == 1:
            raise StoreError("cannot prune store test.db: disk I/O error")
        return super().prune(keep_count, keep_age_seconds)


@pytest.mark.anyio
async def test_prune_forever_prunes_off_the_loop_every_interval_and_outlives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = Pipeline("p")
    pipeline.step(name="only")(lambda n: n)
    store = ThreadNotingStore()
    engine = Engine(store=store, load_entrypoints=False)
    finished = [(await engine.run(pipeline, {"n": n})).execution_id for n in range(3)]
    pending = engine.create(pipeline, {"n": 9}).execution_id
    loop_thread = threading.get_ident()

    def listed() -> list[str]:
        return [r.execution_id for r in store.list()]

    with caplog.at_level(logging.ERROR, logger="stepstream.retention"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(prune_forever, store, Retention(count=1), 0.05)
            with anyio.fail_after(10):
                while listed() != [pending, finished[-1]]:
                    await anyio.sleep(0.01)
                later = (await engine.run(pipeline, {"n": 3})).execution_id
                while listed() != [later, pending]:
                    await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
    assert caplog.messages[0] == (
        "retention: cannot prune store test.db: disk I/O error; trying again in 0.05s"
    )
    assert len(store.prune_threads) >= 3
    assert loop_thread not in store.prune_threads
