"""`Engine.kept`: the waiters of one turn of the event loop ask the store one question."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from stepstream import Engine, Pipeline, StoreError
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
