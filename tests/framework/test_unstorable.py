"""What a step returns, says or raises fails its own execution at worst, never the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepstream import Engine, InputError, Pipeline, Progress
from stepstream.model.values import MAX_ERROR_CHARS, MAX_MESSAGE_CHARS
from stepstream.stores.sqlite import SqliteStore

from fw_support import RecordingStore

pytestmark = pytest.mark.anyio


def _returning(value: object, name: str = "returns") -> Pipeline:
    p = Pipeline(name)

    @p.step
    def only() -> object:
        return value

    return p


def _fine() -> Pipeline:
    return _returning({"ok": True}, "fine")


async def test_outputs_that_cannot_be_encoded_fail_that_execution_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    async with Engine(store=store, load_entrypoints=False) as engine:
        poisoned = await engine.run(_returning(10**5000), {})
        after = await engine.run(_fine(), {})
        store.flush()  # raises if the writer is stuck
    assert poisoned.status == "failed"
    assert poisoned.error is not None and poisoned.error.type == "UnstorableOutputs"
    assert "cannot be stored as JSON" in poisoned.error.message
    assert after.status == "completed" and after.outputs == {"ok": True}
    store.close()
    reopened = SqliteStore(tmp_path / "s.db")
    try:
        assert reopened.get(poisoned.execution_id).status == "failed"  # type: ignore[union-attr]
        assert reopened.get(after.execution_id).status == "completed"  # type: ignore[union-attr]
        assert reopened.unfinished() == []  # nothing left to run again on the next start
    finally:
        reopened.close()


async def test_outputs_over_the_limit_are_replaced_by_a_marker_saying_so() -> None:
    engine = Engine(load_entrypoints=False, max_output_bytes=1_000)
    small = await engine.run(_returning("x" * 100), {})
    big = await engine.run(_returning("x" * 5_000), {})
    assert small.outputs == "x" * 100
    assert big.status == "completed"
    assert big.outputs["marker"] == "outputs_too_large"
    assert big.outputs["bytes"] == 5_002 and big.outputs["limit"] == 1_000
    assert "over the limit of 1,000" in big.outputs["message"]
    unlimited = Engine(load_entrypoints=False, max_output_bytes=None)
    assert (await unlimited.run(_returning("x" * 5_000), {})).outputs == "x" * 5_000


async def test_messages_and_errors_are_kept_encodable_and_bounded(tmp_path: Path) -> None:
    p = Pipeline("noisy")

    @p.step
    def talk(progress: Progress) -> None:
        progress.message = "half a surrogate \ud800 and a lot " + "x" * 5_000
        progress.check()
        raise ValueError("\udfff" + "y" * 50_000)

    store = SqliteStore(tmp_path / "s.db")
    recording = RecordingStore()
    async with Engine(store=store, load_entrypoints=False, progress_interval=0) as engine:
        record = await engine.run(p, {})
        store.flush()  # raises if the writer could not encode them
    await Engine(store=recording, load_entrypoints=False, progress_interval=0).run(p, {})
    assert record.status == "failed"
    assert record.error is not None
    assert len(record.error.message) == MAX_ERROR_CHARS
    assert record.error.message.endswith("…")
    assert "\udfff" not in record.error.message
    kept = [e.progress.message for e in recording.appended if getattr(e, "progress", None)]
    kept = [m for m in kept if m]
    assert kept and all(len(m) <= MAX_MESSAGE_CHARS and "\ud800" not in m for m in kept)
    store.close()


async def test_inputs_that_cannot_be_stored_are_refused_before_anything_is_kept() -> None:
    p = Pipeline("takes")

    @p.step
    def only(text: str) -> str:
        return text

    engine = Engine(load_entrypoints=False)
    with pytest.raises(InputError, match="inputs cannot be stored as JSON"):
        engine.create(p, {"text": "lone \ud800 surrogate"})
    assert engine.list() == []
