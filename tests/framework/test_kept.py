"""`Engine.kept`: one question to the store per turn of the loop; none if it keeps at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from stepstream import Engine, Pipeline, StoreError
from stepstream.stores.memory import MemoryStore
from stepstream.stores.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def _pipeline() -> Pipeline:
    p = Pipeline("kept")

    @p.step
    def one() -> int:
        return 1

    return p


class CountingSqlite(SqliteStore):
    """A SQLite store that counts how often it is asked whether it kept."""

    asked = 0

    def on_kept(
        self, callback: Callable[[], None], failed: Callable[[StoreError], None] | None = None
    ) -> None:
        self.asked += 1
        super().on_kept(callback, failed)


class CountingMemory(MemoryStore):
    """A memory store that counts how often it is asked whether it kept."""

    asked = 0

    def on_kept(
        self, callback: Callable[[], None], failed: Callable[[StoreError], None] | None = None
    ) -> None:
        self.asked += 1
        super().on_kept(callback, failed)


async def test_the_waiters_of_one_turn_ask_a_writing_store_once(tmp_path: Path) -> None:
    store = CountingSqlite(tmp_path / "kept.db")
    engine = Engine(store=store, load_entrypoints=False)
    pipeline = _pipeline()
    try:
        for batch in range(3):
            jobs = [engine.create(pipeline) for _ in range(5)]
            await asyncio.gather(*(engine.kept() for _ in jobs))
            assert store.asked == batch + 1
            for job in jobs:
                assert engine.get(job.execution_id).status == "pending"
    finally:
        store.close()


async def test_a_store_that_keeps_at_once_lets_its_waiters_go_on_in_the_same_turn() -> None:
    store = CountingMemory()
    engine = Engine(store=store, load_entrypoints=False)
    pipeline = _pipeline()
    engine.create(pipeline)
    await engine.kept()  # the first answer shows the store keeps at once
    later: list[str] = []
    asyncio.get_running_loop().call_soon(later.append, "end of the turn")
    for _ in range(3):
        engine.create(pipeline)
        await engine.kept()
    assert later == []  # none of them waited for the end of the turn
    assert store.asked == 4
